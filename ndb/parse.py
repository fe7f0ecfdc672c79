"""Parse ndb(6) text into entries, following the tokenizer of Inferno's attrdb(2).

Pure: text in, entries out. Reading files, `database=` and re-reading are database.py's.

The rules (attrdb(6), ndb(6)):
- an entry starts at a line whose first character is not a space, tab or `#`; the
  following lines that are empty or start with one of those continue it (so blank and
  comment lines do not end an entry); lines before the first entry are ignored;
- a line holds `attr=value`, `attr=` or bare `attr`, separated by spaces or tabs; blanks
  around `=` are allowed (`a = b` is `a=b`);
- `'` or `"` quote any part of a word; inside, the doubled quote stands for one;
- `#` outside quotes starts a comment that runs to the end of the line.

Where Inferno's parser loses data, this one does not (each decision is deliberate):
- a malformed line raises NdbError `FILE:LINE: missing quote` / `empty name`; attrdb
  silently drops the line;
- `a= b=c` (and `a='' b=c`, `a=b=c`) keeps `a` with an empty value; attrdb
  overwrites the pending name and loses `a`;
- the end of a line, or a `#`, ends the last word, so `a b#c` is `a`, `b`; attrdb drops
  `b` there (and on a last line without a newline);
- a `\\r` before the newline is dropped, so CRLF files read like LF files.
"""
from __future__ import annotations

import logging

from ndb.entry import Entry, Tuple
from ndb.errors import NdbError

log = logging.getLogger(__name__)

_BLANKS = " \t"
_QUOTES = "'\""


def parse(text: str, filename: str = "<string>") -> list[Entry]:
    """Parse ndb text into entries, in file order.

    Args:
        text: the whole database text.
        filename: names the source in entries and in error messages.

    Raises:
        NdbError: `FILENAME:LINE: missing quote` or `FILENAME:LINE: empty name`.
    """
    entries: list[Entry] = []
    lines: list[tuple[Tuple, ...]] | None = None
    start = 0
    for lineno, raw in enumerate(text.split("\n"), 1):
        if raw.endswith("\r"):
            raw = raw[:-1]
        if starts_entry(raw):
            if lines:
                entries.append(Entry(tuple(lines), filename, start))
            lines, start = [], lineno
        elif lines is None:
            continue  # attrdb(2) readentry skips everything before the first entry
        try:
            pairs = parse_line(raw)
        except NdbError as exc:
            raise NdbError(f"{filename}:{lineno}: {exc}") from None
        if pairs:
            lines.append(pairs)
    if lines:
        entries.append(Entry(tuple(lines), filename, start))
    return entries


def starts_entry(line: str) -> bool:
    """Whether `line` begins a new entry (attrdb(2) `isentry`)."""
    return bool(line) and line[0] not in " \t#"


def parse_line(line: str) -> tuple[Tuple, ...]:
    """The pairs on one line (no newline in it); a comment-only line has none.

    A word is held back until the next one shows whether it was a bare attribute,
    a name (followed by `=`) or a value (preceded by `name=`), as attrdb(2) does.

    Raises:
        NdbError: `missing quote` or `empty name` (`parse` adds file and line).
    """
    tokens = _Tokens()
    quote = ""
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        i += 1
        if quote:
            if c == quote:
                if i < n and line[i] == quote:
                    i += 1  # a doubled quote stands for one
                else:
                    quote = ""
                    continue
            tokens.word += c
        elif c in _QUOTES:
            quote = c
        elif c == "#":
            break
        elif c in _BLANKS:
            tokens.blank()
        elif c == "=":
            tokens.equals()
        else:
            tokens.word += c
    if quote:
        raise NdbError("missing quote")
    return tokens.finish()


class _Tokens:
    """The state of one line's tokenizer; empty strings stand for Limbo's nil."""

    def __init__(self) -> None:
        self.pairs: list[Tuple] = []
        self.word = ""      # the word being read
        self.lastword = ""  # a finished word: bare attribute, name or value, not known yet
        self.name = ""      # an attribute that has seen its `=` and waits for a value

    def blank(self) -> None:
        if not self.word:
            return
        if self.lastword:  # `lastword word ` : lastword was a bare attribute
            self.pairs.append(Tuple(self.lastword))
        self.lastword, self.word = self.word, ""
        if self.name:  # `name=lastword `
            self.pairs.append(Tuple(self.name, self.lastword))
            self.name = self.lastword = ""

    def equals(self) -> None:
        if not self.lastword:  # `word=`
            self.lastword, self.word = self.word, ""
        if self.word:  # `lastword word=` : lastword was a bare attribute
            self.pairs.append(Tuple(self.lastword))
            self.lastword, self.word = self.word, ""
        if not self.lastword:
            raise NdbError("empty name")
        if self.name:  # `name= lastword=` : name had the empty value (attrdb loses it)
            self.pairs.append(Tuple(self.name))
        self.name, self.lastword = self.lastword, ""

    def finish(self) -> tuple[Tuple, ...]:
        self.blank()  # the end of the line ends the last word
        if self.name or self.lastword:
            self.pairs.append(Tuple(self.name, self.lastword) if self.name else Tuple(self.lastword))
        return tuple(self.pairs)
