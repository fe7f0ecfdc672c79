"""`open_disk`: a disk argument (a `geryon://` URL, a local path or a disk name) as a Disk.

Above both ways of reading a disk: one chunk on a node (`geryon.disks.remote.RemoteFS`) and a
named disk's copies (`geryon.disks.failover.FailoverFS`). Not here: either of them, nor the
local ndb rule (`geryon.disks.resolve`).
"""
from __future__ import annotations

import logging
from typing import Any

from geryon.disks.failover import open_failover
from geryon.disks.remote import RemoteFS, disk_url, parse_node_url
from geryon.disks.resolve import Disk, resolve

log = logging.getLogger(__name__)


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
