"""Finding entries and values: attrdb(2) find/findpair and the same-line-first rule."""
from __future__ import annotations

from ndb import find, parse, query

TEXT = """\
sys=alpha ip=10.0.0.1 kfs
	dom=alpha.example ip=10.0.0.2
	ether=0a0b0c0d0e0f
sys=beta ip=10.0.1.1
	dom=beta.example
infernosite=
	registry=reg0
	registry=reg1
"""
ENTRIES = parse(TEXT, "t")


def test_find_by_attribute_with_any_value() -> None:
    assert [e.get("sys") for e in find(ENTRIES, "dom")] == ["alpha", "beta"]
    assert [e.get("sys") for e in find(ENTRIES, "kfs")] == ["alpha"]
    assert find(ENTRIES, "missing") == []


def test_find_by_pair_where_empty_string_matches_an_empty_value() -> None:
    assert [e.line for e in find(ENTRIES, "sys", "beta")] == [4]
    assert [e.line for e in find(ENTRIES, "infernosite", "")] == [6]
    assert [e.line for e in find(ENTRIES, "kfs", "")] == [1]
    assert find(ENTRIES, "sys", "") == []
    assert find(ENTRIES, "sys", "gamma") == []


def test_query_prefers_the_line_holding_the_pair() -> None:
    # ndb(6): pairs on one line bind tighter than pairs on other lines of the entry.
    assert query(ENTRIES, "dom", "alpha.example", "ip") == ["10.0.0.2", "10.0.0.1"]
    assert query(ENTRIES, "sys", "alpha", "ip") == ["10.0.0.1", "10.0.0.2"]
    assert query(ENTRIES, "ether", "0a0b0c0d0e0f", "ip") == ["10.0.0.1", "10.0.0.2"]


def test_query_values_from_other_lines_and_other_entries() -> None:
    assert query(ENTRIES, "dom", "beta.example", "ip") == ["10.0.1.1"]
    assert query(ENTRIES, "infernosite", "", "registry") == ["reg0", "reg1"]
    assert query(ENTRIES, "kfs", "", "dom") == ["alpha.example"]


def test_query_across_entries_in_file_order() -> None:
    entries = parse("a=1 b=x\nc=2\na=1\n\tb=y b=z\n")
    assert query(entries, "a", "1", "b") == ["x", "y", "z"]


def test_query_without_a_match_or_without_rattr() -> None:
    assert query(ENTRIES, "sys", "gamma", "ip") == []
    assert query(ENTRIES, "sys", "beta", "ether") == []


def test_entry_query_orders_the_lines_of_one_entry() -> None:
    (e,) = parse("a=0 r=first\n\tb=1 r=second\n\tb=1 r=third r=fourth\n")
    assert e.query("b", "1", "r") == ["second", "third", "fourth", "first"]
    assert e.query("b", "2", "r") == ["first", "second", "third", "fourth"]
