"""The pure store: registry(4) rules, sessions and leases with time as a parameter."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from registry.errors import (BadRequest, DuplicateService, PermissionDenied, RegistryError, RegistryFull,
                             ServiceNotFound)
from registry.store import EventKind, Service, Store


def test_register_keeps_order_and_one_value_per_attribute() -> None:
    s = Store()
    svc = s.register("tcp!h!1", [("a", "1"), ("b", "2"), ("a", "3")])
    assert svc.attrs == (("a", "3"), ("b", "2"))
    s.register("tcp!h!2", {"z": "1"})
    assert [x.name for x in s.index()] == ["tcp!h!1", "tcp!h!2"]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x\0y", "n" * 2000])
def test_bad_service_name(name: str) -> None:
    with pytest.raises(BadRequest, match="^bad service name$"):
        Store().register(name)


def test_duplicate_service_name() -> None:
    s = Store()
    s.register("x", owner="alice")
    with pytest.raises(DuplicateService, match="^duplicate service name$"):
        s.register("x", owner="alice")
    with pytest.raises(DuplicateService):
        s.register("x", owner="bob")


def test_update_merges_and_only_owner_may() -> None:
    s = Store()
    s.register("x", [("a", "1"), ("b", "2")], owner="alice")
    assert s.update("x", [("b", "3"), ("c", "4")], owner="alice").attrs == (("a", "1"), ("b", "3"), ("c", "4"))
    with pytest.raises(PermissionDenied, match="^permission denied$"):
        s.update("x", {"a": "9"}, owner="bob")
    with pytest.raises(PermissionDenied, match="^permission denied$"):
        s.unregister("x", owner="bob")
    with pytest.raises(ServiceNotFound):
        s.update("nope", {"a": "1"}, owner="alice")
    s.unregister("x", owner="alice")
    assert s.index() == []
    with pytest.raises(ServiceNotFound):
        s.unregister("x", owner="alice")


def test_find_is_and_of_pairs_with_star_for_present() -> None:
    s = Store()
    s.register("a", [("name", "h0"), ("id", "chunk0")])
    s.register("b", [("name", "h0"), ("id", "chunk1")])
    s.register("c", [("name", "h1")])
    names = lambda q: [x.name for x in s.find(q)]  # noqa: E731
    assert names([("name", "h0")]) == ["a", "b"]
    assert names([("name", "h0"), ("id", "chunk1")]) == ["b"]
    assert names([("id", "*")]) == ["a", "b"]
    assert names([("id", "*"), ("name", "h1")]) == []
    assert names([]) == ["a", "b", "c"]
    assert names([("nope", "*")]) == []


def test_events_carry_versions() -> None:
    s = Store(history=3)
    s.register("a", {"x": "1"})
    s.update("a", {"x": "2"})
    s.update("a", {"x": "2"})                     # no change, no event
    s.unregister("a")
    assert s.version == 3
    kinds = [(e.version, e.kind) for e in s.events_since(0) or []]
    assert kinds == [(1, EventKind.ADD), (2, EventKind.UPDATE), (3, EventKind.REMOVE)]
    assert s.events_since(3) == []
    s.register("b")
    assert s.events_since(0) is None              # history no longer reaches back
    assert [e.version for e in s.events_since(2) or []] == [3, 4]


def test_session_end_removes_all_but_persist() -> None:
    s = Store()
    s.open_session("s1", "alice", now=0.0)
    s.register("live", {"a": "1"}, owner="alice", session="s1")
    s.register("kept", {"persist": "1"}, owner="alice", session="s1")
    removed = s.close_session("s1")
    assert [x.name for x in removed] == ["live"]
    assert [x.name for x in s.index()] == ["kept"]
    assert s.session_of("kept") is None


def test_persist_is_read_at_close() -> None:
    s = Store()
    s.open_session("s1", "alice", now=0.0)
    s.register("x", {"persist": "1"}, owner="alice", session="s1")
    s.update("x", {"persist": "0"}, owner="alice")
    s.close_session("s1")
    assert s.index() == []


def test_expire_uses_the_given_time() -> None:
    s = Store(dead_after=5.0)
    s.open_session("s1", "alice", now=100.0)
    s.register("x", owner="alice", session="s1")
    s.touch("s1", now=103.0)
    assert s.expire(now=107.9) == []
    assert s.expire(now=108.1) == ["s1"]
    assert s.index() == [] and not s.has_session("s1")


def test_same_session_re_registers_idempotently() -> None:
    s = Store()
    s.open_session("s1", "alice", now=0)
    s.register("x", {"a": "1"}, owner="alice", session="s1")
    assert s.register("x", {"a": "2"}, owner="alice", session="s1").attrs == (("a", "2"),)
    assert [e.kind for e in s.events_since(0) or []] == [EventKind.ADD, EventKind.UPDATE]


def test_orphan_persist_entry_is_adopted_by_its_owner_only() -> None:
    s = Store()
    s.register("p", {"persist": "1", "v": "1"}, owner="alice")     # as reloaded from disk
    s.open_session("s2", "bob", now=0)
    with pytest.raises(DuplicateService):
        s.register("p", {"persist": "1"}, owner="bob", session="s2")
    s.open_session("s3", "alice", now=0)
    assert s.register("p", {"persist": "1", "v": "2"}, owner="alice", session="s3").get("v") == "2"
    assert s.session_of("p") == "s3"


def test_limits() -> None:
    s = Store(max_services=2, max_pairs=2)
    s.register("a")
    s.register("b")
    with pytest.raises(RegistryFull):
        s.register("c")
    with pytest.raises(BadRequest, match="too many attributes"):
        s.update("a", {"x": "1", "y": "2", "z": "3"})
    with pytest.raises(BadRequest, match="odd attribute/value pairs"):
        s.register("d", [("x",)])                         # type: ignore[list-item]
    with pytest.raises(ServiceNotFound):
        s.register("e", session="never-opened")


def test_service_wire_round_trip_and_validation() -> None:
    svc = Service("n", (("a", "b"),))
    assert Service.from_wire(svc.to_wire()) == svc
    for bad in (None, [], ["n"], ["n", [["a"]]], [1, []], ["n", [["a", 2]]]):
        with pytest.raises(BadRequest):
            Service.from_wire(bad)


def test_replace_sets_exact_attributes_as_one_update() -> None:
    s = Store()
    s.register("d0.mbox", [("host", "h0"), ("addr", "tcp!h0!1")], owner="#ndb")
    with pytest.raises(PermissionDenied):
        s.replace("d0.mbox", [("host", "h0")], owner="me")
    assert s.replace("d0.mbox", [("host", "h0")], owner="#ndb").attrs == (("host", "h0"),)
    assert [e.kind for e in s.events_since(0) or []] == [EventKind.ADD, EventKind.UPDATE]


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


@given(ops, attr_pairs)
def test_event_log_replays_to_the_index_and_find_agrees(program: list[tuple], query: list[tuple[str, str]]) -> None:
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
    replayed: dict[str, Service] = {}
    for event in s.events_since(0) or []:
        if event.kind is EventKind.REMOVE:
            del replayed[event.service.name]
        else:
            replayed[event.service.name] = event.service
    assert sorted(replayed.values(), key=lambda x: x.name) == sorted(s.index(), key=lambda x: x.name)
    q = tuple(dict(query).items())
    assert s.find(q) == [x for x in s.index() if all(x.get(a) == v for a, v in q)]
    for session in s.sessions():
        assert all(s.session_of(x.name) == session for x in s.services_of(session))
