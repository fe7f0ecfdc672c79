"""A named disk's copies as the registry names them: the master's entry, then each `replica` in turn.

The one walk of the replica chain (`ndb` `replica=` as the registry publishes it: each named
disk's entry carries its next copy's name). `geryon.cluster.members.find_disk` (a job's input
locations), `geryon.disks.remote.disk_url` (the first live copy's URL) and
`geryon.disks.failover.find_copies` (a failover disk's copies) read the chain through it.

Not here: whether a copy is live, opening one (the callers), a local ndb file's `path=`
replicas (`geryon.disks.resolve`, `geryon.disks.failover.find_copies` with an ndb file).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)


def named_disks(registry: Any) -> dict[str, Any]:
    """The registry's entries for named disks (`chunk=*`), by name."""
    return {s.name: s for s in registry.find({"chunk": "*"})}


def copies_of(name: str, named: Mapping[str, Any]) -> list[Any]:
    """The entries of disk `name`'s copies, master first, following `replica` while it names
    an entry not seen yet (a chain that loops, or names a disk the registry does not, ends
    there). [] when `name` is not named."""
    out: list[Any] = []
    seen: set[str] = set()
    current: str | None = name
    while current and current not in seen and current in named:
        seen.add(current)
        out.append(named[current])
        current = named[current].get("replica")
    return out
