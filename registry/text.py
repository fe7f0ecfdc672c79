"""Inferno's registry text format: `name attr val ...` lines with `%q` quoting.

`quote`/`split` implement the quoting of Inferno's sys-print(2) `%q` and string(2)
`unquoted`: a word is quoted only if it is empty, contains a character at or below
space, or contains `'`; inside quotes `''` stands for one quote. This module only
converts between text and values; it does not read or write files.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from registry.errors import BadRequest

log = logging.getLogger(__name__)

Pairs = tuple[tuple[str, str], ...]


def needs_quote(word: str) -> bool:
    """True if `word` must be quoted to survive a round trip through `split`."""
    return word == "" or any(c <= " " or c == "'" for c in word)


def quote(word: str) -> str:
    """Quote `word` the way Inferno's `%q` does."""
    if not needs_quote(word):
        return word
    return "'" + word.replace("'", "''") + "'"


def join(words: Iterable[str]) -> str:
    """Quote each word and join them with single blanks."""
    return " ".join(quote(w) for w in words)


def split(line: str) -> list[str]:
    """Split a line into words, undoing `%q` quoting (string(2) `unquoted`).

    Words are separated by blanks, tabs and newlines; a quoted run may abut unquoted
    characters (`a'b c'd` is the one word `ab cd`).

    Raises:
        BadRequest: a quote is not closed.
    """
    words: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in " \t\r\n":
            i += 1
        if i >= n:
            return words
        buf: list[str] = []
        while i < n and line[i] not in " \t\r\n":
            if line[i] != "'":
                j = i
                while j < n and line[j] not in " \t\r\n'":
                    j += 1
                buf.append(line[i:j])
                i = j
                continue
            i += 1                                   # opening quote
            while True:
                j = line.find("'", i)
                if j < 0:
                    raise BadRequest("unterminated quote")
                buf.append(line[i:j])
                if j + 1 < n and line[j + 1] == "'":  # '' inside quotes is one quote
                    buf.append("'")
                    i = j + 2
                    continue
                i = j + 1
                break
        words.append("".join(buf))


def pairs_of(words: Sequence[str]) -> Pairs:
    """Group `attr val attr val ...` into pairs.

    Raises:
        BadRequest: the number of words is odd (Inferno: `odd attribute/value pairs`).
    """
    if len(words) % 2:
        raise BadRequest("odd attribute/value pairs")
    return tuple((words[i], words[i + 1]) for i in range(0, len(words), 2))


def format_line(name: str, attrs: Iterable[tuple[str, str]]) -> str:
    """Format one service as Inferno prints it: `name attr val ...`."""
    words = [name]
    for attr, val in attrs:
        words += (attr, val)
    return join(words)


def parse_line(line: str) -> tuple[str, Pairs]:
    """Parse `name attr val ...` into the name and its pairs.

    Raises:
        BadRequest: empty line, bad quoting, or odd attribute/value pairs.
    """
    words = split(line)
    if not words:
        raise BadRequest("bad service name")
    return words[0], pairs_of(words[1:])


def parse_query(line: str) -> Pairs:
    """Parse a query `attr val ...` (regquery's arguments, or the find file's text)."""
    return pairs_of(split(line))


def format_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Format a query as `attr val ...`."""
    return join(w for pair in pairs for w in pair)
