"""`listen`: the listening socket of an aiohttp server, TLS handshakes counted and cut short.

asyncio's own TLS server (`create_server(ssl=...)`, what aiohttp's sites use) hands a
connection to the server only once its handshake is done, and waits 60 s for it by
default: a client without the secret that opens connections and never says hello holds
a descriptor each for a minute, unseen by the `ConnectionGuard`, until the process runs
out of descriptors. Here a TLS server accepts plain TCP connections, counts each one with
the guard at once (a handshake in progress is a connection that has not finished a
request header: the first to be closed when a cap is reached), then upgrades it
(`loop.start_tls`) within `handshake_timeout` and gives it to the aiohttp server. Without
TLS it is `create_server` as aiohttp's sites call it. Not here: the caps themselves
(`registry.guard`), certificates (`registry.tls`).
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any

from aiohttp import web

from registry.guard import ACCEPT_BURST, ConnectionGuard

log = logging.getLogger(__name__)

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a client may take to finish its TLS handshake (asyncio's default is 60)."""


class _Handshake(asyncio.Protocol):
    """One accepted TCP connection until its TLS handshake is done."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.early: list[bytes] = []         # decrypted bytes that came before the handover
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.pause_reading()            # the bytes are the TLS layer's (start_tls resumes)
        self.listener.guard.handshake_started(self, transport)
        if transport.is_closing():           # evicted at once: the guard made room with us
            return
        self.task = asyncio.get_running_loop().create_task(self.listener.upgrade(self, transport))
        self.listener.pending.add(self.task)
        self.task.add_done_callback(self.listener.pending.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.guard.handshake_ended(self)
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        # Only as the TLS layer's protocol, between the handshake and the handover.
        self.early.append(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        return True

    def force_close(self) -> None:
        """What the guard calls on a connection it evicts."""
        if self.transport is not None:
            self.transport.abort()
        if self.task is not None:
            self.task.cancel()


class Listener:
    """A listening socket serving `http`, every connection counted by `guard` (see the module)."""

    def __init__(self, http: web.Server, guard: ConnectionGuard, tls: ssl.SSLContext | None,
                 handshake_timeout: float) -> None:
        self.http = http
        self.guard = guard
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.pending: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def upgrade(self, hs: _Handshake, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        assert self.tls is not None
        try:
            secure = await loop.start_tls(transport, hs, self.tls, server_side=True,
                                          ssl_handshake_timeout=self.handshake_timeout)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError) as exc:
            log.debug("TLS handshake from %s failed: %s", transport.get_extra_info("peername"), exc)
            self.guard.handshake_ended(hs)
            transport.abort()
            return
        except asyncio.CancelledError:
            self.guard.handshake_ended(hs)
            transport.abort()
            raise
        self.guard.handshake_ended(hs)
        if secure is None or secure.is_closing():
            return
        handler: Any = self.http()
        secure.set_protocol(handler)
        handler.connection_made(secure)      # now the guard counts it as the server's connection
        for data in hs.early:
            handler.data_received(data)
        if hs.eof:
            handler.eof_received()

    async def start(self, *, sock: socket.socket | None = None, host: str | None = None,
                    port: int | None = None) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        factory: Any = self.http if self.tls is None else (lambda: _Handshake(self))
        if sock is not None:
            self.server = await loop.create_server(factory, sock=sock, backlog=ACCEPT_BURST)
        else:
            self.server = await loop.create_server(factory, host, port, reuse_address=True,
                                                   backlog=ACCEPT_BURST)
        return self.server

    async def close(self) -> None:
        """Stop listening and drop the handshakes in progress; idempotent."""
        if self.server is not None:
            self.server.close()
        for task in list(self.pending):
            task.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)


async def listen(http: web.Server, guard: ConnectionGuard, *, tls: ssl.SSLContext | None = None,
                 handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT, sock: socket.socket | None = None,
                 host: str | None = None, port: int | None = None) -> Listener:
    """Serve `http` on `sock` (bound already) or on `host`:`port`; with `tls`, TLS only."""
    listener = Listener(http, guard, tls, handshake_timeout)
    await listener.start(sock=sock, host=host, port=port)
    return listener


__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT", "Listener", "listen"]
