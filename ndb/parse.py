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
import re

from ndb.entry import Entry, Tuple
from ndb.errors import NdbError
from ndb.limits import UNLIMITED, Limits

log = logging.getLogger(__name__)

_BLANKS = " \t"
_QUOTES = "'\""
_PLAIN = re.compile(r"[^'\" \t=#]+")  # a run of characters that are none of the above, nor = or #


def parse(text: str, filename: str = "<string>", limits: Limits = UNLIMITED) -> list[Entry]:
    """Parse ndb text into entries, in file order, in time linear in len(text).

    Args:
        text: the whole database text.
        filename: names the source in entries and in error messages.
        limits: longest line and word allowed (the file size is the reader's to check).

    Raises:
        NdbError: `FILENAME:LINE: missing quote`, `empty name`, `line of N characters is over
            the limit of M` or `word of N characters is over the limit of M`.
    """
    entries: list[Entry] = []
    lines: list[tuple[Tuple, ...]] | None = None
    start = 0
    for lineno, raw in enumerate(text.split("\n"), 1):
        if raw.endswith("\r"):
            raw = raw[:-1]
        if limits.max_line is not None and len(raw) > limits.max_line:
            raise NdbError(f"{filename}:{lineno}: line of {len(raw)} characters is over the limit of "
                           f"{limits.max_line}")
        if starts_entry(raw):
            if lines:
                entries.append(Entry(tuple(lines), filename, start))
            lines, start = [], lineno
        elif lines is None:
            continue  # attrdb(2) readentry skips everything before the first entry
        try:
            pairs = parse_line(raw, limits.max_word)
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


def parse_line(line: str, max_word: int | None = None) -> tuple[Tuple, ...]:
    """The pairs on one line (no newline in it); a comment-only line has none.

    A word is held back until the next one shows whether it was a bare attribute,
    a name (followed by `=`) or a value (preceded by `name=`), as attrdb(2) does.
    Runs of ordinary characters are taken as slices and a word's pieces joined once,
    so the time is linear in the line's length (adding one character at a time to a
    string attribute copies the word each time: quadratic in its length).

    Raises:
        NdbError: `missing quote`, `empty name` or `word of N characters ...` (`parse`
            adds file and line).
    """
    tokens = _Tokens(max_word)
    quote = ""
    i, n = 0, len(line)
    while i < n:
        if quote:
            j = line.find(quote, i)
            if j < 0:
                raise NdbError("missing quote")
            tokens.add(line[i:j])
            i = j + 1
            if i < n and line[i] == quote:
                tokens.add(quote)  # a doubled quote stands for one
                i += 1
            else:
                quote = ""
            continue
        c = line[i]
        if c in _QUOTES:
            quote = c
            i += 1
        elif c == "#":
            break
        elif c in _BLANKS:
            tokens.blank()
            i += 1
        elif c == "=":
            tokens.equals()
            i += 1
        else:
            plain = _PLAIN.match(line, i)
            assert plain is not None
            tokens.add(plain.group())
            i = plain.end()
    return tokens.finish()


class _Tokens:
    """The state of one line's tokenizer; empty strings stand for Limbo's nil."""

    def __init__(self, max_word: int | None = None) -> None:
        self.pairs: list[Tuple] = []
        self.pieces: list[str] = []  # the word being read, in pieces (never empty strings)
        self.size = 0       # its length
        self.lastword = ""  # a finished word: bare attribute, name or value, not known yet
        self.name = ""      # an attribute that has seen its `=` and waits for a value
        self.max_word = max_word

    def add(self, piece: str) -> None:
        if piece:
            self.pieces.append(piece)
            self.size += len(piece)
            if self.max_word is not None and self.size > self.max_word:
                raise NdbError(f"word of {self.size}+ characters is over the limit of {self.max_word}")

    def take(self) -> str:
        word = "".join(self.pieces)
        self.pieces, self.size = [], 0
        return word

    def blank(self) -> None:
        if not self.pieces:
            return
        if self.lastword:  # `lastword word ` : lastword was a bare attribute
            self.pairs.append(Tuple(self.lastword))
        self.lastword = self.take()
        if self.name:  # `name=lastword `
            self.pairs.append(Tuple(self.name, self.lastword))
            self.name = self.lastword = ""

    def equals(self) -> None:
        if not self.lastword:  # `word=`
            self.lastword = self.take()
        if self.pieces:  # `lastword word=` : lastword was a bare attribute
            self.pairs.append(Tuple(self.lastword))
            self.lastword = self.take()
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
