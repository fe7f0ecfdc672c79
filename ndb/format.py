"""Print entries as ndb text: the file form, and the one-line form ndb/query prints.

Pure: entries in, text out. Not a parser (parse.py) and writes no files.

Two forms, because Inferno has two:
- `format_entry` writes the file form: the first line's pairs at column 0, each further
  line tab-indented, quoting whatever the parser would otherwise misread. What it
  writes parses back to the same entry, in Geryon and in Inferno.
- `format_line` writes what ndb/query(8) prints for an entry: every pair on one line,
  `%q=%q` (Limbo's sh(1)-style quoting, see `quote`). Like Inferno's, that line does
  not quote `#`, `=` or `"`, so it is for reading, not for reading back.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from ndb.entry import Entry, Tuple

log = logging.getLogger(__name__)

# Besides blanks and controls, the characters the ndb(6) parser treats specially.
_SPECIAL = frozenset("'\"#=")


def quote(s: str) -> str:
    """Quote `s` as Limbo's `%q` does (sys-print(2), lib9 fmtquote).

    Unchanged unless it is empty or holds a character at or below space or a `'`;
    then it is put in single quotes with each `'` doubled.
    """
    if s and not any(c <= " " or c == "'" for c in s):
        return s
    return "'" + s.replace("'", "''") + "'"


def quote_word(s: str) -> str:
    """Quote `s` so the ndb(6) parser reads it back as one word, unchanged."""
    if s and not any(c <= " " or c in _SPECIAL for c in s):
        return s
    return "'" + s.replace("'", "''") + "'"


def format_line(entry: Entry) -> str:
    """The entry as ndb/query prints it: ` `-separated `attr=value` on one line."""
    return " ".join(f"{quote(t.attr)}={quote(t.val)}" for t in entry.tuples)


def format_entry(entry: Entry) -> str:
    """The entry in the file form, without a final newline.

    An empty value is written `attr=` at the end of a line and bare `attr` elsewhere:
    attrdb(2) drops `a=` when another pair follows it on the same line.
    """
    lines = [_format_pairs(pairs) for pairs in entry.lines]
    return "\n".join(lines[:1] + ["\t" + l for l in lines[1:]])


def format_database(entries: Iterable[Entry]) -> str:
    """Entries in the file form, one after another, each ending in a newline."""
    return "".join(format_entry(e) + "\n" for e in entries)


def _format_pairs(pairs: tuple[Tuple, ...]) -> str:
    words = []
    for i, t in enumerate(pairs):
        if t.val:
            words.append(f"{quote_word(t.attr)}={quote_word(t.val)}")
        elif i == len(pairs) - 1:
            words.append(f"{quote_word(t.attr)}=")
        else:
            words.append(quote_word(t.attr))
    return " ".join(words)
