"""ndb(6) parsing: entries, pairs, quoting, comments, errors with file:line."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ndb import Entry, NdbError, Tuple, parse, parse_line

DATA = Path(__file__).parent / "data"


def pairs(line: str) -> list[tuple[str, str]]:
    return [(t.attr, t.val) for t in parse_line(line)]


def flat(entry: Entry) -> list[tuple[str, str]]:
    return [(t.attr, t.val) for t in entry.tuples]


# --- pairs on one line ---------------------------------------------------------------

def test_attr_value_pairs_separated_by_spaces_and_tabs() -> None:
    assert pairs("tcp=styx port=6666") == [("tcp", "styx"), ("port", "6666")]
    assert pairs("protocol=tcp\t\tipv4proto=6") == [("protocol", "tcp"), ("ipv4proto", "6")]
    assert pairs("  \t a=1 \t  b=2\t ") == [("a", "1"), ("b", "2")]


def test_bare_attr_and_attr_equals_have_empty_values() -> None:
    assert pairs("name=d0.mbox kfs") == [("name", "d0.mbox"), ("kfs", "")]
    assert pairs("kfs name=d0.mbox") == [("kfs", ""), ("name", "d0.mbox")]
    assert pairs("database=") == [("database", "")]
    assert pairs("a b c") == [("a", ""), ("b", ""), ("c", "")]


def test_empty_value_followed_by_another_pair_is_kept() -> None:
    # attrdb.b loses `a` here; Geryon keeps it (documented in ndb/parse.py).
    assert pairs("a= b=c") == [("a", ""), ("b", "c")]
    assert pairs("a='' b=c") == [("a", ""), ("b", "c")]
    assert pairs("a=\tb") == [("a", "b")]  # a value may follow `=` after blanks
    assert pairs("a=b=c") == [("a", ""), ("b", "c")]  # attrdb: only b=c


def test_blanks_around_equals_as_in_inferno() -> None:
    assert pairs("a = b c") == [("a", "b"), ("c", "")]


def test_single_and_double_quotes_with_doubled_quote_chars() -> None:
    assert pairs("a='x y' b=\"p q\"") == [("a", "x y"), ("b", "p q")]
    assert pairs("a='it''s'") == [("a", "it's")]
    assert pairs('a="say ""hi"""') == [("a", 'say "hi"')]
    assert pairs("a='\"' b=\"'\"") == [("a", '"'), ("b", "'")]
    assert pairs("a=''") == [("a", "")]


def test_quotes_may_cover_part_of_a_word_and_the_name() -> None:
    assert pairs("a=x'y z'w") == [("a", "xy zw")]
    assert pairs("'odd name'=v 'k=v'") == [("odd name", "v"), ("k=v", "")]


def test_hash_starts_a_comment_outside_quotes_only() -> None:
    assert pairs("tcp=rstyx port=6668\t# remote invocation") == [("tcp", "rstyx"), ("port", "6668")]
    assert pairs("a=1#comment") == [("a", "1")]
    assert pairs("a='#not a comment' b=\"x#y\"") == [("a", "#not a comment"), ("b", "x#y")]
    assert pairs("# a whole-line comment") == []
    assert pairs("\t#dns=1.2.3.4\t# resolver") == []


def test_a_comment_ends_the_last_word() -> None:
    assert pairs("a b#c") == [("a", ""), ("b", "")]


def test_missing_quote_and_empty_name_are_errors() -> None:
    with pytest.raises(NdbError, match="^missing quote$"):
        parse_line("a='open")
    with pytest.raises(NdbError, match="^missing quote$"):
        parse_line('a="x"" b=1')
    with pytest.raises(NdbError, match="^empty name$"):
        parse_line("=x")
    with pytest.raises(NdbError, match="^empty name$"):
        parse_line("a=1 =x")
    with pytest.raises(NdbError, match="^empty name$"):
        parse_line("''=x")


# --- entries -------------------------------------------------------------------------

def test_an_entry_continues_on_lines_that_start_with_blanks() -> None:
    text = "name=d0.mbox kfs\n\tmaster=host0!chunk0 replica=d0.replica\nname=d1.mbox kfs\n    master=host1!chunk1\n"
    e0, e1 = parse(text, "cluster")
    assert e0.lines == (
        (Tuple("name", "d0.mbox"), Tuple("kfs", "")),
        (Tuple("master", "host0!chunk0"), Tuple("replica", "d0.replica")),
    )
    assert flat(e1) == [("name", "d1.mbox"), ("kfs", ""), ("master", "host1!chunk1")]
    assert (e0.file, e0.line, e1.file, e1.line) == ("cluster", 1, "cluster", 3)


def test_blank_and_comment_lines_do_not_end_an_entry() -> None:
    text = "a=1\n\n# a comment at column 0\n\tb=2\n\t# c=3\nd=4\n"
    e0, e1 = parse(text)
    assert flat(e0) == [("a", "1"), ("b", "2")]
    assert len(e0.lines) == 2  # comment-only lines add no line
    assert flat(e1) == [("d", "4")]
    assert e1.line == 6


def test_lines_before_the_first_entry_are_ignored() -> None:
    text = "#\n# header\n#\n\n\tstray=1\n  'unclosed\nfirst=1\n"
    (e,) = parse(text)
    assert flat(e) == [("first", "1")]
    assert e.line == 7


def test_crlf_line_ends_read_like_lf() -> None:
    assert parse("a=1 b=2\r\n\tc=3\r\n") == parse("a=1 b=2\n\tc=3\n")


def test_text_without_entries() -> None:
    assert parse("") == []
    assert parse("# only comments\n\n\t# indented\n") == []


def test_errors_name_file_and_line() -> None:
    text = "a=1\n\tb=2\nc=3 d='open\n"
    with pytest.raises(NdbError) as info:
        parse(text, "cluster")
    assert str(info.value) == "cluster:3: missing quote"
    with pytest.raises(NdbError) as info:
        parse("a=1\n\n\t=x\n")
    assert str(info.value) == "<string>:3: empty name"


def test_quotes_do_not_span_lines() -> None:
    with pytest.raises(NdbError, match="^f:1: missing quote$"):
        parse("a='x\n\ty'\n", "f")


# --- Entry and Tuple values ----------------------------------------------------------

def test_entry_accessors() -> None:
    (e,) = parse("sys=a ip=1 kfs\n\tip=2 dom=x\n")
    assert e.get("ip") == "1"
    assert e.get("kfs") == ""
    assert e.get("missing") is None
    assert e.getall("ip") == ["1", "2"]
    assert e.getall("missing") == []
    assert e.has("dom") and e.has("kfs") and not e.has("missing")
    assert e.haspair("kfs", "") and not e.haspair("ip", "3")
    assert [t.attr for t in e.tuples] == ["sys", "ip", "kfs", "ip", "dom"]


def test_entries_are_frozen_hashable_values_compared_by_content() -> None:
    (a,) = parse("x=1\n", "one")
    (b,) = parse("\n\nx=1\n", "two")
    assert a == b and hash(a) == hash(b)
    assert (a.file, a.line, b.file, b.line) == ("one", 1, "two", 3)
    with pytest.raises(AttributeError):
        a.line = 5  # type: ignore[misc]
    assert Entry([[Tuple("x", "1")]]) == a  # lists are stored as tuples


def test_tuples_reject_what_ndb_cannot_write() -> None:
    with pytest.raises(ValueError):
        Tuple("", "x")
    with pytest.raises(ValueError):
        Tuple("a", "x\ny")
    with pytest.raises(TypeError):
        Tuple("a", 1)  # type: ignore[arg-type]


# --- the real Inferno files ----------------------------------------------------------

def test_inferno_files_parse() -> None:
    inferno = parse((DATA / "inferno").read_text(), "inferno")
    assert len(inferno) == 16
    assert flat(inferno[3]) == [("tcp", "rstyx"), ("port", "6668")]
    assert flat(inferno[12]) == [("tcp", "infkey"), ("port", "6677")]

    dns = parse((DATA / "dns").read_text(), "dns")
    assert dns[0].lines[0] == (Tuple("dom", ""),)
    assert len(dns[0].getall("ns")) == 13
    assert dns[-1].get("ip") == "202.12.27.33"

    local = parse((DATA / "local").read_text(), "local")
    assert [e.line for e in local] == [1, 10]
    assert local[0].getall("file") == ["/lib/ndb/local", "/lib/ndb/dns", "/lib/ndb/inferno", "/lib/ndb/common"]
    assert not local[1].has("dnsdomain") and not local[1].has("dns")  # commented out

    common = parse((DATA / "common").read_text(), "common")
    assert all(e.tuples for e in common)
    assert parse((DATA / "registry").read_text(), "registry") == []


@given(st.text(st.sampled_from("ab =#'\"\t\n\r x")))
def test_any_text_parses_or_raises_ndb_error(text: str) -> None:
    try:
        entries = parse(text, "f")
    except NdbError as exc:
        assert str(exc).startswith("f:")
        assert str(exc).endswith(("missing quote", "empty name"))
    else:
        assert all(e.lines and all(e.lines) for e in entries)
