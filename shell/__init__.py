"""Geryon's Unix filters (`intermediate`, `agg`, `idx`) and command-block helpers.

Stdlib only; imports nothing else of Geryon's.
"""
from __future__ import annotations

from shell.errors import ShellError

__all__ = ["ShellError"]
