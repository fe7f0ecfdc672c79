"""The cluster as a client sees it: its members and their copies, host facts, choosing a cpu,
rcpu, dsh, where a command runs (this machine or a cluster), TLS certificates.

Not here: the registry itself (`registry`), the node daemon (`geryon.node`), running a job
across the cluster (`geryon.mapreduce`).
"""
