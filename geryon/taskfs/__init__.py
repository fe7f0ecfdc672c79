"""taskfs sessions: the client API, the wire, a session's members on a node, node trees, the
FUSE file interface.

Not here: the node's session routes (`geryon.node.sessionservice`), the CLI verbs
(`geryon.cli.taskfs`).
"""
