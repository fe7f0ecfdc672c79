"""`open_disk`: a disk argument (a `geryon://` URL, a local path or a disk name) as a Disk;
`Inputs`: a task's input location (a directory, or a chunk on this node or another) as an FS.

Above both ways of reading a disk: one chunk on a node (`geryon.disks.remote.RemoteFS`) and a
named disk's copies (`geryon.disks.failover.FailoverFS`). Not here: either of them, nor the
local ndb rule (`geryon.disks.resolve`).
"""
from __future__ import annotations

import logging
from typing import Any

from fs.base import FS

from geryon.disks.chunk import ChunkFS
from geryon.disks.failover import open_failover
from geryon.disks.remote import RemoteFS, disk_url, parse_node_url
from geryon.disks.resolve import Disk, resolve

log = logging.getLogger(__name__)

IO_TIMEOUT = 5.0
"""Seconds an input read waits on a silent node before trying the next replica."""



def open_disk(arg: str, *, registry: Any = None, secret: bytes | None = None,
              ndb_file: str | None = None) -> Any:
    """A disk argument as a `geryon.disks.resolve.Disk`: a `geryon://` URL, a local path, or a name.

    Names are looked up in the registry first (ndb-named disks: `d0.mbox ... addr URL`),
    opened as a `geryon.disks.failover.FailoverFS` (reads from the master, else a replica,
    verified against checksums; writes to the master), then in the local ndb file
    (`geryon.disks.resolve.resolve`).

    Raises:
        UnknownDisk: not a URL, directory, or known name; or no live chunk holds it.
    """
    if arg.startswith(("geryon://", "http://", "https://", "tcp!")):
        url, chunk = parse_node_url(arg)
        return Disk(arg, RemoteFS(url, chunk, secret))
    if registry is not None and "/" not in arg and not arg.startswith("."):
        url = disk_url(arg, registry)
        if url is not None:
            # Reads go to the master, else a replica, verified (geryon.disks.failover); writes to the master.
            return open_failover(arg, registry, secret, ndb_file)
    return resolve(arg, ndb_file)


class Inputs:
    """Opens input locations: this node's chunks directly, others over the network."""

    def __init__(self, self_url: str, chunks: dict[str, str], secret: bytes | None) -> None:
        self.self_url, self.chunks, self.secret = self_url, chunks, secret

    def open(self, location: str) -> tuple[FS, str | None]:
        if not location.startswith(("geryon://", "http://", "https://")):
            return ChunkFS(location), location
        node, chunk = parse_node_url(location)
        if node == self.self_url and chunk in self.chunks:
            return ChunkFS(self.chunks[chunk]), self.chunks[chunk]
        return RemoteFS(node, chunk, self.secret, timeout=IO_TIMEOUT), None
