"""Inferno attrdb(6)/ndb(6) attribute databases: parse, multi-file databases, query.

Stdlib only; imports nothing else of Geryon's.
"""
from __future__ import annotations

from ndb.errors import NdbError

__all__ = ["NdbError"]
