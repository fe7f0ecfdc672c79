"""Editing ndb text: drop some entries by name, append others, keep everything else as written.

Pure: text in, text out (the writers — `geryon load`'s local ndb file, the registry's — do
the file handling). An entry is a line at column 0 and the indented lines after it; comments,
blank lines and other entries are kept byte for byte. Not here: parsing values (parse.py),
formatting entries (format.py).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from ndb.limits import DEFAULT_LIMITS, Limits
from ndb.parse import parse

log = logging.getLogger(__name__)


def blocks(text: str) -> list[str]:
    """The text cut into entries (a first line and its indented lines) and other lines."""
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        if line[:1] in (" ", "\t") and out and not out[-1].lstrip().startswith("#") and out[-1].strip():
            out[-1] += line
        else:
            out.append(line)
    return out


def replace_entries(text: str, drop: Callable[[str], bool], add: str, name: str = "ndb",
                    limits: Limits = DEFAULT_LIMITS) -> str:
    """`text` without the entries whose `name=` value `drop` accepts, with `add` appended.

    Raises:
        NdbError: `text` or `add` is not valid ndb (nothing is changed).
    """
    parse(text, name, limits)                 # refuse to rewrite what cannot be read
    parse(add, name, limits)
    kept = []
    for block in blocks(text):
        entries = parse(block, name, limits) if block.strip() and not block.lstrip().startswith("#") else []
        if entries and any(drop(e.get("name") or "") for e in entries):
            continue
        kept.append(block)
    out = "".join(kept)
    if out and not out.endswith("\n"):
        out += "\n"
    return out + add
