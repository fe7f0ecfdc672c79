"""The node daemon's default numbers, importable without aiohttp (the CLI shows them): defined in
`geryon.defaults`, named here as the node always named them."""
from __future__ import annotations

from geryon.defaults import DEFAULT_NODE_PORT, DEFAULT_NODE_REFRESH as DEFAULT_REFRESH  # noqa: F401 - re-exported
