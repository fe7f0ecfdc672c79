"""The pick protocol's implementations: pure, time as a parameter."""
from __future__ import annotations

from collections import Counter

import pytest

from geryon.cluster.hostfacts import parse_loadavg, parse_meminfo
from geryon.cluster.pick import (CpuInfo, LeastLoaded, LocalityFirst, NoCpu, Pick, RoundRobin, Weight, make_pick,
                         weights_from_entries)
import ndb


def cpu(host: str, load: float = 0.0, ncpu: int = 1, **kw: int) -> CpuInfo:
    return CpuInfo(name=f"tcp!{host}!1", host=host, url=f"http://{host}:1", ncpu=ncpu, load=load, **kw)


CPUS = [cpu("a"), cpu("b"), cpu("c")]


@pytest.mark.parametrize("pick", [RoundRobin(), LeastLoaded(), LocalityFirst(lambda d: ())])
def test_every_pick_satisfies_the_protocol(pick: Pick) -> None:
    assert pick.pick(CPUS, 0.0).host in {"a", "b", "c"}
    with pytest.raises(NoCpu):
        pick.pick([], 0.0)


def test_round_robin_cycles_and_survives_membership_changes() -> None:
    rr = RoundRobin()
    assert [rr.pick(CPUS, 0).host for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]
    rr = RoundRobin(last="tcp!a!1")
    assert rr.pick([cpu("a"), cpu("c")], 0).host == "c"         # b died: not skipped past c
    assert rr.pick([cpu("a"), cpu("b"), cpu("c")], 0).host == "a"


def test_least_loaded_uses_load_per_core_and_weights() -> None:
    cpus = [cpu("a", load=2.0, ncpu=4), cpu("b", load=1.0, ncpu=1), cpu("c", load=0.9, ncpu=2)]
    assert LeastLoaded(penalty=0).pick(cpus, 0).host == "c"       # 0.45 < 0.5 < 1.0
    weighted = LeastLoaded({"c": Weight(load=2.0)}, penalty=0)
    assert weighted.pick(cpus, 0).host == "a"                      # c scores 0.9 now
    mem = LeastLoaded({"a": Weight(load=1.0, mem=1.0)}, penalty=0)
    tight = [cpu("a", mem_free=1, mem_total=10), cpu("b", load=0.5)]
    assert mem.pick(tight, 0).host == "b"


def test_virtual_load_spreads_quick_picks_then_decays() -> None:
    ll = LeastLoaded(penalty=1.0, penalty_seconds=5.0)
    cpus = [cpu("a", load=0.1), cpu("b", load=0.2)]
    assert [ll.pick(cpus, 100.0).host, ll.pick(cpus, 100.5).host] == ["a", "b"]
    assert ll.virtual(cpus[0], 102.5) == pytest.approx(0.5)
    assert ll.pick(cpus, 106.0).host == "a"                        # both penalties gone


def test_locality_first_prefers_hosts_holding_the_disk() -> None:
    where = {"d0.mbox": ["b"], "d1.mbox": ["c"]}
    pick = LocalityFirst(lambda d: where.get(d, ()), RoundRobin())
    assert Counter(pick.pick(CPUS, 0, ["d0.mbox"]).host for _ in range(3)) == {"b": 3}
    assert {pick.pick(CPUS, 0, ["d0.mbox", "d1.mbox"]).host for _ in range(4)} == {"b", "c"}
    assert pick.pick(CPUS, 0, ["elsewhere"]).host in {"a", "b", "c"}


def test_make_pick_and_weights_from_ndb() -> None:
    assert isinstance(make_pick("rr"), RoundRobin)
    assert isinstance(make_pick("load"), LeastLoaded)
    assert isinstance(make_pick("local"), LocalityFirst)
    with pytest.raises(ValueError):
        make_pick("random")
    entries = ndb.parse("node=n1 load=2.0 mem=1.0\nnode=n2\nname=d0.mbox kfs\n")
    assert weights_from_entries(entries) == {"n1": Weight(2.0, 1.0), "n2": Weight(1.0, 0.0)}


def test_proc_parsers() -> None:
    assert parse_loadavg("0.52 0.40 0.31 2/345 6789\n") == 0.52
    free, total = parse_meminfo("MemTotal:       16000 kB\nMemFree:  100 kB\nMemAvailable:   8000 kB\n")
    assert (free, total) == (8000 * 1024, 16000 * 1024)
