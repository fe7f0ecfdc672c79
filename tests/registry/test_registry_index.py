"""The store's indexes: find answers what a scan of every service would, looking at fewer."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from registry.errors import RegistryError
from registry.store import Service, Store, as_pairs

names = st.sampled_from(["a", "b", "c", "tcp!h!1"])
owners = st.sampled_from(["alice", "bob"])
attr_pairs = st.lists(st.tuples(st.sampled_from(["x", "y", "persist"]), st.sampled_from(["0", "1", ""])),
                      max_size=3)
ops = st.lists(st.one_of(
    st.tuples(st.just("register"), names, attr_pairs, owners, st.sampled_from([None, "s1", "s2"])),
    st.tuples(st.just("update"), names, attr_pairs, owners),
    st.tuples(st.just("replace"), names, attr_pairs, owners),
    st.tuples(st.just("unregister"), names, owners),
    st.tuples(st.just("open"), st.sampled_from(["s1", "s2"]), owners, st.floats(0, 20)),
    st.tuples(st.just("close"), st.sampled_from(["s1", "s2"])),
    st.tuples(st.just("expire"), st.floats(0, 30)),
), max_size=40)


star_queries = st.lists(st.tuples(st.sampled_from(["x", "y", "persist", "z"]), st.sampled_from(["0", "1", "", "*"])),
                        max_size=3)


@given(ops, star_queries)
def test_find_agrees_with_a_scan_of_the_index(program: list[tuple], query: list[tuple[str, str]]) -> None:
    """find (indexed by pair and by attribute) answers what matching every service would,
    in registration order, whatever registrations, updates, removals and expiries came first."""
    s = Store(dead_after=5)
    for op, *args in program:
        try:
            if op == "register":
                s.register(args[0], args[1], owner=args[2], session=args[3])
            elif op in ("update", "replace", "unregister"):
                getattr(s, op)(*args[:-1], owner=args[-1])
            elif op == "open":
                s.open_session(*args)
            elif op == "close":
                s.close_session(*args)
            else:
                s.expire(*args)
        except RegistryError:
            pass
        assert s.find(query) == [x for x in s.index() if x.matches(as_pairs(query))]


def test_find_looks_only_at_services_holding_the_rarest_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Store()
    for n in range(1000):
        s.register(f"svc-{n}", [("svc", "bench"), ("n", str(n % 10)), ("k", str(n))])
    s.register("cpu", [("svc", "rstyx"), ("host", "h0")])
    s.update("svc-7", [("k", "seven")], owner="")
    looked: list[str] = []
    matches = Service.matches
    monkeypatch.setattr(Service, "matches", lambda self, q: looked.append(self.name) or matches(self, q))
    assert [x.name for x in s.find([("svc", "bench"), ("k", "seven")])] == ["svc-7"]
    assert looked == ["svc-7"]
    looked.clear()
    assert [x.name for x in s.find([("n", "3"), ("svc", "bench")])] == [f"svc-{n}" for n in range(3, 1000, 10)]
    assert len(looked) == 100
    looked.clear()
    assert s.find([("k", "7")]) == [] and looked == []          # svc-7's k was changed
    assert s.find([("host", "*"), ("svc", "bench")]) == [] and looked == ["cpu"]
    looked.clear()
    assert [x.name for x in s.find([("host", "*")])] == ["cpu"] and looked == ["cpu"]
    s.unregister("cpu", owner="")
    assert s.find([("host", "*")]) == [] and s.find([("svc", "rstyx")]) == []
