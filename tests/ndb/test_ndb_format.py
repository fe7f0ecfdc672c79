"""Printing entries: Limbo %q quoting, the ndb/query line, the file form, round trips."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ndb import Entry, Tuple, format_database, format_entry, format_line, parse, quote, quote_word


def test_quote_is_limbo_percent_q() -> None:
    assert quote("6668") == "6668"
    assert quote("host0!chunk0") == "host0!chunk0"
    assert quote("") == "''"
    assert quote("a b") == "'a b'"
    assert quote("tab\there") == "'tab\there'"
    assert quote("it's") == "'it''s'"
    # %q quotes only blanks, controls and ': these pass through as they are.
    assert quote("a=b#c\"d") == "a=b#c\"d"


def test_quote_word_also_quotes_what_the_parser_treats_specially() -> None:
    assert quote_word("plain") == "plain"
    assert quote_word("") == "''"
    for s in ("a=b", "x#y", 'say "hi"', "it's", "a b"):
        assert quote_word(s).startswith("'")
        assert parse(f"k={quote_word(s)}\n")[0].get("k") == s


def test_format_line_is_what_ndb_query_prints() -> None:
    (e,) = parse("infernosite=\n\tSIGNER=your_signer_here\n\tregistry=your_registry_server\n")
    assert format_line(e) == "infernosite='' SIGNER=your_signer_here registry=your_registry_server"
    (e,) = parse("name=d0.mbox kfs\n\tmaster=host0!chunk0 replica=d0.replica\n")
    assert format_line(e) == "name=d0.mbox kfs='' master=host0!chunk0 replica=d0.replica"
    (e,) = parse("a='x y' b='it''s'\n")
    assert format_line(e) == "a='x y' b='it''s'"


def test_format_entry_keeps_lines_and_indents_continuations() -> None:
    text = "name=d0.mbox kfs=\n\tmaster=host0!chunk0 replica=d0.replica\n"
    (e,) = parse(text)
    assert format_entry(e) + "\n" == text
    assert parse(text) == parse(text.replace("kfs=", "kfs"))
    (e,) = parse("database=\n\tfile=/lib/ndb/local\n\tfile=/lib/ndb/dns\n")
    assert format_entry(e) == "database=\n\tfile=/lib/ndb/local\n\tfile=/lib/ndb/dns"


def test_format_entry_writes_empty_values_so_inferno_keeps_them() -> None:
    e = Entry(((Tuple("a"), Tuple("b", "1"), Tuple("c")),))
    assert format_entry(e) == "a b=1 c="


def test_format_database_separates_entries_by_newlines() -> None:
    entries = parse("a=1\n\tb=2\nc=3\n")
    assert format_database(entries) == "a=1\n\tb=2\nc=3\n"
    assert format_database([]) == ""


# --- round trips ---------------------------------------------------------------------

_chars = st.characters(blacklist_characters="\n", blacklist_categories=("Cs",))
_tuples = st.builds(Tuple, st.text(_chars, min_size=1, max_size=6), st.text(_chars, max_size=6))
_lines = st.lists(_tuples, min_size=1, max_size=4).map(tuple)
_entries = st.lists(_lines, min_size=1, max_size=4).map(lambda lines: Entry(tuple(lines)))


@given(st.lists(_entries, max_size=5))
def test_formatted_entries_parse_back_to_the_same_entries(entries: list[Entry]) -> None:
    parsed = parse(format_database(entries))
    assert parsed == entries
    assert [e.lines for e in parsed] == [e.lines for e in entries]


# The ndb/query line quotes like %q, which leaves `#`, `=` and `"` bare: without those
# characters it reads back to the same pairs (on one line).
_plain = st.characters(blacklist_characters="\n#=\"", blacklist_categories=("Cs",))
_plain_tuples = st.builds(Tuple, st.text(_plain, min_size=1, max_size=6), st.text(_plain, max_size=6))


@given(st.lists(_plain_tuples, min_size=1, max_size=6))
def test_query_line_reads_back_to_the_same_pairs(tuples: list[Tuple]) -> None:
    (e,) = parse(format_line(Entry((tuple(tuples),))) + "\n")
    assert list(e.tuples) == tuples
