"""One walk of a named disk's replica chain (issue 13 item 3: `copies_of`), and its readers: a job's
input locations, a disk's URL, a failover disk's copies (on an in-memory registry store), and a local
ndb file's replica directories (`geryon.disks.resolve`, on real directories).

Before, each walked the chain itself (a loop in `geryon.cluster.members.find_disk`, a recursion in
`geryon.disks.remote.disk_url`, another loop in `geryon.disks.failover.find_copies`, and
`geryon.disks.resolve._replica_paths`, which read only the master entry's own `replica=` names).
"""
from __future__ import annotations

import pathlib

import pytest

from geryon.cluster.members import find_disk
from geryon.disks.copies import copies_of, named_disks
from geryon.disks.failover import find_copies
from geryon.disks.remote import disk_url
from geryon.errors import UnknownDisk
from registry.store import Store


def _store(disks: dict[str, dict[str, str]], live: dict[str, str] = {}) -> Store:  # noqa: B006 - read only
    """Named disks (`chunk=*` entries) and live chunk services (`resource=kfs`, name -> url)."""
    store = Store()
    for name, attrs in disks.items():
        store.register(name, {"host": "h", "chunk": name.replace(".", "-"), **attrs}, owner="ndb")
    for addr, url in live.items():
        store.register(addr, {"resource": "kfs", "url": url}, owner="node")
    return store


def _names(entries: list) -> list[str]:
    return [e.name for e in entries]


def test_the_chain_is_master_then_each_replica_in_turn() -> None:
    store = _store({"web logs": {"replica": "web logs.r1"}, "web logs.r1": {"replica": "web logs.r2"},
                    "web logs.r2": {}, "other": {}})
    named = named_disks(store)
    assert _names(copies_of("web logs", named)) == ["web logs", "web logs.r1", "web logs.r2"]
    assert _names(copies_of("web logs.r1", named)) == ["web logs.r1", "web logs.r2"]
    assert copies_of("nobody", named) == []


@pytest.mark.parametrize("disks", [
    {"a": {"replica": "b"}, "b": {"replica": "a"}},          # a loop
    {"a": {"replica": "b"}, "b": {"replica": "missing"}},    # a replica the registry does not name
    {"a": {"replica": "b"}, "b": {"replica": ""}},
])
def test_a_chain_that_loops_or_breaks_ends_there(disks: dict[str, dict[str, str]]) -> None:
    assert _names(copies_of("a", named_disks(_store(disks)))) == ["a", "b"]


CHAIN = {"d0": {"addr": "tcp!n0!1", "replica": "d0.r"}, "d0.r": {"addr": "tcp!n1!1", "replica": "d0.rr"},
         "d0.rr": {"replica": "d0"}}


def test_a_jobs_input_locations_are_the_live_copies_in_chain_order() -> None:
    store = _store(CHAIN, {"tcp!n0!1": "geryon://n0:1/d0-chunk", "tcp!n1!1": "geryon://n1:1/r"})
    assert find_disk("d0", store).locations == ("geryon://n0:1/d0-chunk", "geryon://n1:1/r")
    assert find_disk("d0.r", store).locations == ("geryon://n1:1/r", "geryon://n0:1/d0-chunk")  # d0.rr names d0
    with pytest.raises(UnknownDisk, match="d0.rr: chunk h!d0-rr is not live and no replica is"):
        find_disk("d0.rr", _store(CHAIN))                   # nothing serves d0.rr, d0 or d0.r


def test_a_disks_url_is_its_first_live_copy() -> None:
    store = _store({"d0": {"replica": "d0.r"}, "d0.r": {"replica": "d0.rr"}, "d0.rr": {"addr": "tcp!n2!1"}})
    assert disk_url("d0", store) == "tcp!n2!1"
    assert disk_url("unnamed", store) is None
    with pytest.raises(UnknownDisk, match="d0: chunk h!d0 is not live"):
        disk_url("d0", _store({"d0": {"replica": "d0.r"}, "d0.r": {"replica": "d0"}}))


def test_a_failover_disks_copies_follow_the_chain() -> None:
    copies = find_copies("d0", _store(CHAIN))
    assert [(c.name, c.where) for c in copies] == [("d0", "h!d0"), ("d0.r", "h!d0-r"), ("d0.rr", "h!d0-rr")]
    assert all(c.fs is None for c in copies)                 # none is live: no node serves these chunks
    with pytest.raises(UnknownDisk, match="the registry names no such disk"):
        find_copies("nobody", _store(CHAIN))


# -- a local ndb file's replicas (geryon.disks.resolve), through the same walk --------------------

def _ndb_disks(tmp_path, entries: dict[str, tuple[str, list[str]]], missing: set[str] = frozenset()) -> str:
    """An ndb file in a folder of its own naming disks `name: (path, [replica names])`, their directories
    made (but for those in `missing`), each holding a file that says which copy it is."""
    db_dir = tmp_path / "the db"
    db_dir.mkdir(exist_ok=True)
    text = []
    for name, (path, replicas) in entries.items():
        if name not in missing:
            (db_dir / path).mkdir(parents=True)
            (db_dir / path / "which.txt").write_text(name)
        text.append(f"name='{name}' kfs\n\tmaster='local!{path}'\n\tpath='{path}'\n"
                    + "".join(f"\treplica='{r}'\n" for r in replicas))
    (db_dir / "ndb").write_text("".join(text))
    return str(db_dir / "ndb")


def _which(disk) -> str:
    return disk.fs.readtext("which.txt")


def test_a_local_disks_replicas_follow_a_chain_as_the_registrys_do(tmp_path) -> None:
    """d0 names d0.r1, whose entry names d0.r2 (the registry's shape): with d0 and d0.r1 gone, d0.r2 is
    read (before, only the replicas the master's own entry named were tried: unknown disk)."""
    from geryon.disks.resolve import resolve

    db = _ndb_disks(tmp_path, {"web logs": ("disks/web logs", ["web logs.r1"]),
                               "web logs.r1": ("disks/r1", ["web logs.r2"]), "web logs.r2": ("other/r2", [])},
                    missing={"web logs", "web logs.r1"})
    disk = resolve("web logs", db)
    assert disk.name == "web logs" and _which(disk) == "web logs.r2" and disk.replicas == ()


def test_a_local_disks_replicas_are_in_walk_order_without_loops(tmp_path) -> None:
    """Several `replica=` on the master, one replica naming its own and one naming the master back:
    each copy once, depth first in file order, the master never among its own replicas."""
    from geryon.disks.resolve import resolve

    db = _ndb_disks(tmp_path, {"d0": ("m", ["d0.b", "d0.a"]), "d0.a": ("a", ["d0"]), "d0.b": ("b", ["d0.c"]),
                               "d0.c": ("c", ["d0.b", "nobody"])})
    disk = resolve("d0", db)
    base = pathlib.Path(db).parent
    assert _which(disk) == "d0" and disk.replicas == tuple(str(base / p) for p in ("b", "c", "a"))
    assert resolve("d0.a", db).replicas == tuple(str(base / p) for p in ("m", "b", "c"))
