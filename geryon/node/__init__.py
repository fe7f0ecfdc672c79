"""The node daemon: a machine's chunk disks and cpu, served over HTTP and registered.

`geryon node` runs one `NodeDaemon` (`geryon.node.daemon`): an aiohttp server on one port
holding the chunk service (`geryon.node.chunkservice`: the `fs` primitives over HTTP), the
cpu service (`geryon.node.cpuservice`: run a command block with disks mounted) and the
registrations that announce both; `geryon.net.connection` is the client side of the
wire, used by `geryon.disks.remote`. The daemon loads on first use, so clients importing the
connection do not pull in the server. Nothing here reads the environment or parses
command lines (the CLI does).
"""
from __future__ import annotations

import importlib
import logging
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["NodeConfig", "NodeDaemon", "NodeDisk"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("geryon.node.daemon"), name)
    raise AttributeError(f"module 'geryon.node' has no attribute {name!r}")
