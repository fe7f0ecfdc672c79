"""Chunk disks: the local chunk fs, a remote chunk, naming and resolving disks, copies and failover,
checksums, replicas, allocation and placement, the names of a job's output parts.

Not here: reading records out of a disk's files (`geryon.records`), loading sources into
disks (`geryon.ingest`), the node serving chunks (`geryon.node.chunkservice`).
"""
