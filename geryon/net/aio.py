"""The asynchronous side of talking to nodes: the one way an aiohttp session to nodes is made.

Every asynchronous client of node daemons (the job driver, rcpu, dsh, taskfs sessions and tree
links, the dashboard, a cpu service fetching another node's chunk) signs its requests with
`registry.signer.Signer` on a session made here: our TLS connector (`registry.tls.connector`),
the caller's timeouts. `UNREACHABLE` is what such a request or WebSocket raises when the node
cannot be talked to. Not here: the synchronous connection (`geryon.net.connection`), the loop
thread these run on (`geryon.net.loop`).
"""
from __future__ import annotations

import asyncio

import aiohttp

from registry import tls
from registry.errors import RegistryError

UNREACHABLE = (aiohttp.ClientError, asyncio.TimeoutError, OSError, RegistryError)
"""A node that could not be reached, refused the handshake, or answered something not a node's."""


def node_http(total: float | None = None, sock_connect: float | None = None) -> aiohttp.ClientSession:
    """An aiohttp session for signed requests to nodes (make it on the loop that uses it).

    Args:
        total: seconds one request may take, whole (None: no bound).
        sock_connect: seconds a connection may take to open (None: no bound).
    """
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=total, sock_connect=sock_connect),
                                 connector=tls.connector())
