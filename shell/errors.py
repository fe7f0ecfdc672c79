"""The shell package's error root and its few specific errors.

Messages name the filter and, for bad input, the line number; the CLI prints them as
one line. Nothing here formats for a terminal.
"""
from __future__ import annotations


class ShellError(Exception):
    """A filter or command block failed."""


class BadRecord(ShellError):
    """An input line is not the `key count` record a filter expects.

    Attributes:
        lineno: 1-based line number in the filter's input.
    """

    def __init__(self, message: str, lineno: int) -> None:
        super().__init__(message)
        self.lineno = lineno


class OutputUnavailable(ShellError):
    """A filter could not create or write one of its output files."""


class BlockNotStarted(ShellError):
    """A command block could not be started (missing program or directory)."""
