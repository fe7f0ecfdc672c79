"""Search a sequence of entries the way attrdb(2) searches a database.

Pure functions over entries; `Database` applies them to files it keeps fresh.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from ndb.entry import Entry

log = logging.getLogger(__name__)


def find(entries: Iterable[Entry], attr: str, value: str | None = None) -> list[Entry]:
    """The entries holding `attr=value`, in file order.

    With `value` None, the entries holding `attr` with any value (attrdb(2) `Db.find`);
    otherwise the exact pair (`Db.findpair`), where `''` matches an empty value.
    """
    if value is None:
        return [e for e in entries if e.has(attr)]
    return [e for e in entries if e.haspair(attr, value)]


def query(entries: Iterable[Entry], attr: str, value: str, rattr: str) -> list[str]:
    """The values of `rattr` in the entries holding `attr=value`, in ndb/query -a order.

    Entry by entry in file order; within an entry, the values on the lines holding
    `attr=value` come before those on its other lines (ndb(6): pairs on one line bind
    tighter). The first value is what plain ndb/query prints.
    """
    values: list[str] = []
    for e in entries:
        if e.haspair(attr, value):
            values.extend(e.query(attr, value, rattr))
    return values
