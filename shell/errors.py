"""The shell package's error root."""
from __future__ import annotations


class ShellError(Exception):
    """A filter or command block failed."""
