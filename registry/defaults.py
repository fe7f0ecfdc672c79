"""The registry's default numbers, in a module that imports nothing heavy.

The CLI shows them in its help, so they must load without aiohttp or zeroconf.
"""
from __future__ import annotations

DEFAULT_PORT = 6675
"""The registry's TCP port: Inferno's `registry` service in lib/ndb/common."""

DEFAULT_MAX_CONNECTIONS = 512
"""Connections a server holds at once (at most half its file-descriptor limit; see `registry.guard`)."""

DEFAULT_IDLE_TIMEOUT = 10.0
"""Seconds a connection may stay silent (no request, no heartbeat) before it is closed."""

DEFAULT_MAX_PER_CLIENT = 256
"""Connections a server holds at once for one client address (see `registry.guard`)."""
