"""Inferno `%q` quoting and the `name attr val ...` line format."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from registry.errors import BadRequest
from registry.store import Service
from registry.text import format_line, parse_line, parse_query, quote, split


@pytest.mark.parametrize("word, quoted", [
    ("abc", "abc"), ("", "''"), ("a b", "'a b'"), ("it's", "'it''s'"), ("tab\there", "'tab\there'"),
    ("tcp!host!6675", "tcp!host!6675"), ("*", "*"), ("é", "é"), ("a=b", "a=b"), ("\x01", "'\x01'"),
])
def test_quote_only_when_inferno_would(word: str, quoted: str) -> None:
    assert quote(word) == quoted


@pytest.mark.parametrize("line, words", [
    ("a b  c", ["a", "b", "c"]),
    ("  ", []),
    ("'' x", ["", "x"]),
    ("'it''s' here", ["it's", "here"]),
    ("a'b c'd e", ["ab cd", "e"]),
    ("'a\tb'\tc\n", ["a\tb", "c"]),
    ("''''", ["'"]),
])
def test_split(line: str, words: list[str]) -> None:
    assert split(line) == words


def test_unterminated_quote_is_an_error() -> None:
    with pytest.raises(BadRequest, match="unterminated quote"):
        split("a 'b")


def test_odd_pairs_use_the_inferno_message() -> None:
    with pytest.raises(BadRequest, match="^odd attribute/value pairs$"):
        parse_line("name a")
    with pytest.raises(BadRequest, match="odd attribute/value pairs"):
        parse_query("a b c")


def test_service_line_matches_inferno_output() -> None:
    svc = Service("tcp!host0!6676", (("name", "host0"), ("id", "chunk0"), ("note", "two words"), ("e", "")))
    assert svc.line() == "tcp!host0!6676 name host0 id chunk0 note 'two words' e ''"
    assert Service.parse(svc.line()) == svc


words = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@given(st.lists(words, max_size=10))
def test_split_inverts_join(ws: list[str]) -> None:
    assert split(" ".join(quote(w) for w in ws)) == ws


@given(words.filter(bool), st.lists(st.tuples(words, words), max_size=6))
def test_line_round_trip(name: str, pairs: list[tuple[str, str]]) -> None:
    line = format_line(name, pairs)
    assert parse_line(line) == (name, tuple(pairs))
