"""The node daemon's default numbers, importable without aiohttp (the CLI shows them)."""
from __future__ import annotations

DEFAULT_NODE_PORT = 6676
"""The node daemon's TCP port (one above the registry's 6675)."""

DEFAULT_REFRESH = 1.0
"""Seconds between refreshes of the load, memory and free-space attributes."""
