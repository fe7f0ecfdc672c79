"""The wire to a node, client side: one signed node connection (`connection`) and the one loop
thread every asyncio client runs on (`loop`).

Not here: the node's server side (`geryon.node`), what is read over the wire
(`geryon.disks.remote`, `geryon.taskfs`, `geryon.mapreduce.jobnodes`).
"""
