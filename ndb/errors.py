"""The ndb package's error root."""
from __future__ import annotations


class NdbError(Exception):
    """An ndb file could not be read or parsed; the message names file and line."""
