"""How much of an ndb database is read: limits on file size, line length and word length.

An ndb file is configuration a server re-reads on its own (the registry's `--ndb`): a file
that names `/dev/zero`, or holds a megabyte-long word, must cost a bounded amount of
memory and time and be refused with a reason. Not here: applying them (parse.py checks
lines and words, database.py files).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_MAX_FILE = 64 << 20
"""Largest file of a database, in bytes (Inferno's own /lib/ndb files are a few KiB)."""

DEFAULT_MAX_LINE = 256 << 10
"""Longest line, in characters."""

DEFAULT_MAX_WORD = 64 << 10
"""Longest attribute or value, in characters."""


@dataclass(frozen=True)
class Limits:
    """The limits one reading of a database keeps; None means unlimited."""

    max_file: int | None = DEFAULT_MAX_FILE
    max_line: int | None = DEFAULT_MAX_LINE
    max_word: int | None = DEFAULT_MAX_WORD


DEFAULT_LIMITS = Limits()
"""What `ndb.open` uses unless told otherwise."""

UNLIMITED = Limits(None, None, None)
"""No limits (for trusted input, and to show parsing is linear)."""
