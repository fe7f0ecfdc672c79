"""`ConnectionGuard`: caps on the connections of one aiohttp server, and quiet refusals.

File descriptors are what a client without the secret can exhaust: 1,100 half-open
requests under `ulimit -n 1024` starved a node. The guard counts the connections of an
aiohttp `web.Server` (it wraps the server's `connection_made`/`connection_lost`, so any
site works) and keeps them under two caps: `max_connections` for the server (at most
half the process's file-descriptor limit) and `per_client` for one client address.
A connection over a cap does not push out a client that is being served: the guard
closes the oldest connection of that address (or, for the server cap, of anyone) that
has not yet finished a request header, else the oldest idle kept-alive one; only when
every connection is busy in a request is the newcomer answered 503. So a flood of
half-open connections only ever closes its own, and a legitimate request gets in. The
time a connection may take to send its headers is aiohttp's `keepalive_timeout`
(whose timer starts at connect and is not reset by data), set by the server's owner; a TLS
connection's handshake is counted too (`registry.listen`), and cut after its own timeout.

The guard's middleware marks which connections are in a request and answers a request
whose client went away mid-body without aiohttp's traceback; its logging filter turns
what aiohttp logs about a client's broken requests into one line. Everything it logs
goes through a `RateLog`: one line per client address per interval. Not here:
authentication and body limits (`registry.auth`), the routes.
"""
from __future__ import annotations

import logging
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from registry.defaults import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PER_CLIENT
from registry.ratelog import RateLog, suppressed_note

log = logging.getLogger(__name__)

MIN_CONNECTIONS = 16
"""The server cap never goes below this, however low the file-descriptor limit."""

ACCEPT_BURST = 64
"""The listen backlog the servers pass, which is also how many connections asyncio accepts in
one wake-up (a burst the guard sees only afterwards; see `ConnectionLimits.within`)."""

_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections a server holds, and for how long an idle one.

    Attributes:
        max_connections: connections held at once by the server.
        per_client: connections held at once for one client address.
        idle_timeout: seconds a connection may take to send a request's headers, and stay
            idle between requests (aiohttp's `keepalive_timeout`).
    """

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    per_client: int = DEFAULT_MAX_PER_CLIENT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT

    def within(self, nofile: int) -> ConnectionLimits:
        """These limits with the server cap at most half of `nofile` descriptors (the rest: files,
        pipes), less two accept bursts: asyncio accepts up to ACCEPT_BURST connections per wake-up
        before the guard sees them, and the ones it closes free their descriptors a turn later."""
        cap = min(self.max_connections, max(MIN_CONNECTIONS, nofile // 2 - 2 * ACCEPT_BURST))
        return replace(self, max_connections=cap, per_client=min(self.per_client, cap))


def open_file_limit() -> int:
    """This process's soft limit on open files (RLIMIT_NOFILE)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class _Conn:
    """What the guard knows of one connection."""

    __slots__ = ("peer", "requests", "busy")

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.requests = 0        # requests whose headers arrived
        self.busy = 0            # requests being handled now (a WebSocket: for its life)


class _QuietClientErrors(logging.Filter):
    """aiohttp's lines about a client's broken requests: one line each, rate-limited per client."""

    def __init__(self, guard: ConnectionGuard) -> None:
        super().__init__()
        self.guard = guard

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno < logging.WARNING or not isinstance(exc, ConnectionError | HttpProcessingError):
            return True
        peer = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "?"
        count = self.guard.rate.allow(f"client-error {peer}", self.guard.clock())
        if count is None:
            return False
        first = (str(exc).splitlines() or [""])[0][:200]
        record.msg = "%s: %s: %s%s"
        record.args = (record.getMessage(), type(exc).__name__, first, suppressed_note(count))
        record.exc_info = record.exc_text = None
        return True


class ConnectionGuard:
    """Keeps one aiohttp server's connections within `limits` (see the module).

    Args:
        http: the server (`web.AppRunner(...).server` after `setup()`).
        limits: the caps (pass `limits.within(open_file_limit())`).
        what: names the server in log lines.
        rate: decides which lines are written (one per client per interval by default).
        clock: seconds, for the rate of log lines.
    """

    def __init__(self, http: web.Server, limits: ConnectionLimits, *, what: str = "server",
                 rate: RateLog | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.http = http
        self.limits = limits
        self.what = what
        self.rate = rate or RateLog()
        self.clock = clock
        self.conns: dict[Any, _Conn] = {}              # oldest first
        self.per_peer: dict[str, int] = {}
        self.evicted = 0
        self.refused = 0
        self._made, self._lost = http.connection_made, http.connection_lost
        http.connection_made = self._connection_made   # type: ignore[method-assign]
        http.connection_lost = self._connection_lost   # type: ignore[method-assign]
        self._filter = _QuietClientErrors(self)
        logging.getLogger("aiohttp.server").addFilter(self._filter)

    def close(self) -> None:
        """Stop filtering aiohttp's log; idempotent."""
        logging.getLogger("aiohttp.server").removeFilter(self._filter)

    # -- counting -------------------------------------------------------------------------
    def _connection_made(self, handler: Any, transport: Any) -> None:
        self._made(handler, transport)
        self._count(handler, transport)

    def handshake_started(self, conn: Any, transport: Any) -> None:
        """Count a connection whose TLS handshake is under way (`registry.listen`): it has not
        finished a request header, and `conn.force_close()` drops it."""
        self._count(conn, transport)

    def handshake_ended(self, conn: Any) -> None:
        """The handshake of `conn` is over, well or not; idempotent."""
        self._forget(conn)

    def _count(self, handler: Any, transport: Any) -> None:
        peername = transport.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) and peername else "?"
        self.conns[handler] = _Conn(peer)
        self.per_peer[peer] = self.per_peer.get(peer, 0) + 1
        if self.per_peer[peer] > self.limits.per_client:
            self._make_room(handler, transport, peer, f"{self.limits.per_client} connections from {peer}")
        elif len(self.conns) > self.limits.max_connections:
            self._make_room(handler, transport, None, f"{self.limits.max_connections} connections")

    def _connection_lost(self, handler: Any, exc: BaseException | None = None) -> None:
        self._forget(handler)
        self._lost(handler, exc)

    def _forget(self, handler: Any) -> None:
        conn = self.conns.pop(handler, None)
        if conn is not None:
            left = self.per_peer[conn.peer] - 1
            if left:
                self.per_peer[conn.peer] = left
            else:
                del self.per_peer[conn.peer]

    def _make_room(self, new: Any, transport: Any, peer: str | None, cap: str) -> None:
        """Close the oldest unserved connection (of `peer`, or of anyone), else refuse `new`."""
        victim = self._victim(new, peer)
        if victim is None:
            self.refused += 1
            transport.write(_BUSY)
            self._note(self.conns[new].peer, f"refused a connection: at the cap of {cap}, all busy")
            self._forget(new)
            new.force_close()
            return
        self.evicted += 1
        self._note(self.conns[victim].peer, f"at the cap of {cap}: closed the oldest unserved one")
        self._forget(victim)
        victim.force_close()

    def _victim(self, new: Any, peer: str | None) -> Any:
        idle = None
        for handler, conn in self.conns.items():
            if handler is new or conn.busy or (peer is not None and conn.peer != peer):
                continue
            if conn.requests == 0:
                return handler                             # has not finished a request header
            if idle is None:
                idle = handler                             # kept alive between requests
        return idle

    def _note(self, peer: str, what: str) -> None:
        count = self.rate.allow(f"connections {peer}", self.clock())
        if count is not None:
            log.warning("%s: %s (from %s)%s", self.what, what, peer, suppressed_note(count))

    # -- requests -------------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Marks the connection busy while its request is handled; a vanished client, quietly."""
        conn = self.conns.get(request.protocol)
        peer = conn.peer if conn is not None else (request.remote or "?")
        if conn is not None:
            conn.requests += 1
            conn.busy += 1
        try:
            return await handler(request)
        except (ConnectionError, RuntimeError) as exc:    # aiohttp: RuntimeError("Connection closed.")
            transport = request.transport
            if transport is not None and not transport.is_closing():
                raise                                      # not the client's going: a real error
            count = self.rate.allow(f"aborted {peer}", self.clock())
            if count is not None:
                log.warning("%s: %s %s from %s aborted: %s%s", self.what, request.method, request.path[:80],
                            peer, exc or type(exc).__name__, suppressed_note(count))
            resp = web.Response(status=400)
            resp.force_close()
            return resp
        finally:
            if conn is not None:
                conn.busy -= 1


__all__ = ["ConnectionGuard", "ConnectionLimits", "MIN_CONNECTIONS", "open_file_limit"]
