"""Inferno attrdb(6)/ndb(6) attribute databases: parse, multi-file databases, query.

Stdlib only; imports nothing else of Geryon's. The public surface is re-exported here:

    db = ndb.open("ndb/cluster")                   # Database, re-read when files change
    db.query("name", "d0.mbox", "master")          # ['host0!chunk0']
    db.find("name", "d0.mbox")                     # [Entry(...)]
    ndb.parse(text, "cluster")                     # pure: list[Entry], linear time
    ndb.open(path, ndb.Limits(max_file=1 << 20))   # file size, line, word limits
    ndb.format_entry(entry) / ndb.format_line(entry)
    ndb.replace_entries(text, drop=lambda name: ..., add=more_text)   # pure edit
"""
from __future__ import annotations

from ndb.database import Database, open
from ndb.entry import Entry, Tuple
from ndb.errors import NdbError
from ndb.limits import DEFAULT_LIMITS, UNLIMITED, Limits
from ndb.edit import replace_entries
from ndb.format import format_database, format_entry, format_line, quote, quote_word
from ndb.parse import parse, parse_line
from ndb.search import find, query

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "UNLIMITED",
    "Database",
    "Entry",
    "NdbError",
    "Tuple",
    "find",
    "format_database",
    "format_entry",
    "format_line",
    "open",
    "parse",
    "parse_line",
    "query",
    "quote",
    "quote_word",
    "replace_entries",
]
