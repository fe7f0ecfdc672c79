"""One walk of a named disk's replica chain (issue 13 item 3: `copies_of`), and its three readers
(a job's input locations, a disk's URL, a failover disk's copies) on an in-memory registry store.

Before, each of the three walked the chain itself (a loop in `geryon.cluster.members.find_disk`,
a recursion in `geryon.disks.remote.disk_url`, another loop in `geryon.disks.failover.find_copies`).
"""
from __future__ import annotations

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
