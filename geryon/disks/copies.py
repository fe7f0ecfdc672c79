"""A named disk's copies: its master's entry, then each `replica` its entries name, in turn.

The one walk of the replica chain, for the registry's entries and a local ndb file's alike.
The registry publishes each named disk's entry with its next copy's name (`replica`, one
value); a local ndb file's master entry may list several (`replica=d0.r1 replica=d0.r2`),
and a replica's entry may name one of its own. `geryon.cluster.members.find_disk` (a job's
input locations), `geryon.disks.remote.disk_url` (the first live copy's URL),
`geryon.disks.failover.find_copies` (a failover disk's copies, from the registry) and
`geryon.disks.resolve.resolve` (a local ndb disk's replica directories) read the chain
through it.

Not here: whether a copy is live or its directory exists, opening one (the callers), and
`geryon.disks.failover.find_copies` with an ndb file (the `DiskEntry` values of
`geryon.disks.diskdb`, whose missing replicas it reports as copies that cannot be read).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ndb

log = logging.getLogger(__name__)


def named_disks(registry: Any) -> dict[str, Any]:
    """The registry's entries for named disks (`chunk=*`), by name."""
    return {s.name: s for s in registry.find({"chunk": "*"})}


def ndb_disks(db: ndb.Database) -> dict[str, ndb.Entry]:
    """A local ndb file's entries that have a `name`, by name (the first entry of a name)."""
    out: dict[str, ndb.Entry] = {}
    for entry in db.find("name"):
        out.setdefault(entry.get("name") or "", entry)
    return out


def registry_replicas(entry: Any) -> list[str]:
    """The copy a registry entry names next (its one `replica` value), if any."""
    replica = entry.get("replica")
    return [replica] if replica else []


def ndb_replicas(entry: ndb.Entry) -> list[str]:
    """The copies an ndb entry names (every `replica=` value, in file order)."""
    return entry.getall("replica")


def copies_of(name: str, named: Mapping[str, Any],
              replicas: Callable[[Any], Iterable[str]] = registry_replicas) -> list[Any]:
    """The entries of disk `name`'s copies, master first, then each replica its entry names
    (`replicas(entry)`, in order), each followed by the replicas its own entry names (depth
    first). A name seen already (a chain that loops) or one `named` does not hold (a replica
    the registry or the ndb file does not name) is passed over. [] when `name` is not named."""
    out: list[Any] = []
    seen: set[str] = set()
    todo: list[str] = [name]
    while todo:
        current = todo.pop()
        if not current or current in seen or current not in named:
            continue
        seen.add(current)
        out.append(named[current])
        todo.extend(reversed(list(replicas(named[current]))))
    return out
