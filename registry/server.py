"""The registry server: HTTP + WebSocket (aiohttp) over a `Store`.

Routes (JSON bodies; every one signed with the cluster secret, see `registry.auth`):
  GET  /v1/info        version, cluster id, store version
  GET  /v1/index       every service (`Accept: text/plain`: Inferno lines)
  POST /v1/find        {"query": [[attr, val], ...]}
  POST /v1/update      {"name", "attrs"}      owner from X-Geryon-Owner
  POST /v1/unregister  {"name"}               owner from X-Geryon-Owner
  GET  /v1/ndb         the ndb file naming disks: {"path", "text", "version"}
  POST /v1/ndb         {"drop": [names], "add": ndb text, "base": version}: name disks in it
                       (or {"text", "base"}: the file's whole new text)
  GET  /v1/session     WebSocket: register/update/unregister/ping; entries live with it
  GET  /v1/watch       WebSocket: a snapshot, then every event
Liveness, persistence and zeroconf live here; the rules are the store's, and the ndb
file's named disks are kept by `registry.namedisks`. This module does not parse command
lines or read the environment.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from registry.auth import DEFAULT_WINDOW, MIN_SECRET_BYTES, ServerIdentity, auth_middleware, cluster_id
from registry.channel import ChannelRefused, accept
from registry.discovery import DEFAULT_PORT, PROTOCOL_VERSION, Advertiser, advertised_addresses, listen_interfaces
from registry.defaults import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PER_CLIENT
from registry.errors import BadRequest, RegistryError
from registry.secretfile import signing_secret
from registry.signer import url_host
from registry.guard import ConnectionGuard, ConnectionLimits, open_file_limit
from registry.listen import Listener, listen
from registry.namedisks import NamedDisks
from registry.sessions import UPDATE, Sessions
from registry import jsondoc
from registry.jsondoc import PAIRS, STR, STRS, optional
from registry.state import StateLock, load_state, save_state
from registry.tls import TlsFiles, server_context
from registry.store import DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT, Service, Store, as_pairs
from registry.watchers import Watchers

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 64 * 1024
"""Largest request body or WebSocket message, in bytes."""



DEFAULT_CLUSTER_RECHECK = 1.0
"""Seconds between looks at the cluster id of the secret (re-announced over zeroconf when it changed)."""

DEFAULT_BODY_TIMEOUT = 5.0
"""Seconds a client may take to send a request body."""

DEFAULT_EXPIRE_INTERVAL = 0.1
"""Seconds between checks for silent sessions."""

DEFAULT_NDB_POLL = 0.5
"""Seconds between checks of the ndb file for changes."""

_SESSION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
HEADER_CLIENT = "X-Geryon-Client"
HEADER_OWNER = "X-Geryon-Owner"


@dataclass(frozen=True)
class ServerConfig:
    """Everything a registry server needs; built by the CLI, passed down."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    secret: bytes = b""                       # the cluster secret: required, there is no open mode
    state_path: Path | None = None
    ndb_path: Path | None = None
    mdns: bool = True
    mdns_interfaces: tuple[str, ...] | None = None
    heartbeat: float = DEFAULT_HEARTBEAT
    dead_after: float = DEFAULT_DEAD_AFTER
    max_body: int = DEFAULT_MAX_BODY
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    per_client: int = DEFAULT_MAX_PER_CLIENT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    auth_window: float = DEFAULT_WINDOW
    expire_interval: float = DEFAULT_EXPIRE_INTERVAL
    ndb_poll: float = DEFAULT_NDB_POLL
    tls: TlsFiles = TlsFiles()                # a certificate: serve https only (see registry.tls)


# The shapes of the JSON bodies and session messages (registry.jsondoc checks them).
_FIND = {"query": optional(PAIRS)}
_UNREGISTER = {"name": STR}
_NDB_EDIT = {"drop": optional(STRS), "add": optional(STR), "base": optional(STR), "text": optional(STR)}

_STATUS = {"permission": 403, "notfound": 404, "duplicate": 409, "conflict": 409, "full": 503, "auth": 401}


def _error_response(exc: RegistryError) -> web.Response:
    return web.json_response({"error": str(exc), "kind": exc.kind}, status=_STATUS.get(exc.kind, 400))


def _owner_of(request: web.Request) -> str:
    owner = request.headers.get(HEADER_OWNER, "")
    if len(owner) > 256 or owner.startswith("#"):
        raise BadRequest("bad owner")
    return owner


class RegistryServer:
    """One registry server; `async with RegistryServer(config) as srv:` runs it.

    Args:
        config: what to listen on and how.
        clock: monotonic seconds, for leases (tests may pass their own).
    """

    def __init__(self, config: ServerConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        if len(config.secret or b"") < MIN_SECRET_BYTES:
            raise RegistryError("registry: a cluster secret is required (run `geryon init`)")
        self.config = config
        self.clock = clock
        self.cluster = cluster_id(config.secret)
        self.identity = ServerIdentity.new("registry", config.secret)
        self.store = Store(dead_after=config.dead_after)
        self.watchers = Watchers()
        self._published = 0
        self._saved: list[tuple[Service, str]] = []
        self.disks = NamedDisks(config.ndb_path, self.store, self._changed)
        self.sessions = Sessions(config, self.store, self.identity, clock, self._changed)
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._listener: Listener | None = None
        self._advertiser: Advertiser | None = None
        self.guard: ConnectionGuard | None = None
        self.port = config.port
        self._closed = False
        self._state_lock: StateLock | None = None

    @property
    def url(self) -> str:
        """Where clients reach this server."""
        scheme = "https" if self.config.tls.serving else "http"
        return f"{scheme}://{url_host(self.config.host)}:{self.port}"

    # -- life cycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Load state, listen, advertise and start the housekeeping tasks."""
        cfg = self.config
        if cfg.state_path is not None:
            self._state_lock = StateLock.take(cfg.state_path)   # and sweeps a killed registry's temp files
            for service, owner in load_state(cfg.state_path):
                try:
                    self.store.register(service.name, service.attrs, owner=owner)
                except RegistryError as exc:    # the file's fault: say which file
                    raise type(exc)(f"{cfg.state_path}: {service.name[:64]}: {exc}") from None
            self._saved = self.store.persistent()
            log.info("loaded %d persist entries from %s", len(self._saved), cfg.state_path)
        # Connections counted first (registry.guard), then signatures from the headers
        # alone: no body is read for an unsigned request.
        limits = ConnectionLimits(cfg.max_connections, cfg.per_client, cfg.idle_timeout).within(open_file_limit())
        app = web.Application(client_max_size=cfg.max_body,
                              middlewares=[self._guarded, auth_middleware(cfg.secret, self.identity, window=cfg.auth_window,
                                                           max_body=cfg.max_body, body_timeout=cfg.body_timeout),
                                           self._limits])
        app.add_routes([web.get("/v1/info", self._info), web.get("/v1/index", self._index),
                        web.post("/v1/find", self._find), web.post("/v1/update", self._update),
                        web.post("/v1/unregister", self._unregister),
                        web.get("/v1/ndb", self._ndb), web.post("/v1/ndb", self._ndb_edit),
                        web.get("/v1/session", self._session), web.get("/v1/watch", self._watch)])
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     keepalive_timeout=cfg.idle_timeout, max_headers=64,
                                     max_line_size=8190, max_field_size=8190,
                                     lingering_time=0)   # an unread body: close, do not drain
        await self._runner.setup()
        http = self._runner.server
        assert http is not None
        self.guard = ConnectionGuard(http, limits, what="registry")
        ssl = server_context(cfg.tls) if cfg.tls.serving else None
        self._listener = await listen(http, self.guard, tls=ssl, host=cfg.host, port=cfg.port,
                                      handshake_timeout=cfg.idle_timeout)   # handshakes counted too
        assert self._listener.server is not None
        self.port = self._listener.server.sockets[0].getsockname()[1]
        self._tasks.append(asyncio.create_task(self._expire_loop()))
        if self.disks.kept:
            self._tasks.append(asyncio.create_task(self.disks.follow(cfg.ndb_poll)))
        if cfg.mdns:
            await self._advertise()
            self._tasks.append(asyncio.create_task(self._cluster_loop()))
        log.info("registry listening on %s (cluster %s)", self.url, self.cluster)

    async def close(self) -> None:
        """Stop advertising, close every connection and task; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._advertiser is not None:
            await self._advertiser.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()
        self.watchers.close_all()
        await self.sessions.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.guard is not None:
            self.guard.close()
        if self._state_lock is not None:
            self._state_lock.release()

    async def __aenter__(self) -> RegistryServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing --------------------------------------------------------------------
    @web.middleware
    async def _guarded(self, request: web.Request, handler: Any) -> web.StreamResponse:
        assert self.guard is not None
        return await self.guard.middleware(request, handler)

    @web.middleware
    async def _limits(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            if request.body_exists:
                await asyncio.wait_for(request.read(), self.config.body_timeout)
            response: web.StreamResponse = await handler(request)
            return response
        except asyncio.TimeoutError:
            return web.json_response({"error": "request body too slow", "kind": "bad"}, status=408)
        except RegistryError as exc:
            return _error_response(exc)

    async def _json(self, request: web.Request, fields: dict[str, jsondoc.Kind]) -> dict[str, Any]:
        return jsondoc.load_object(await request.read(), fields, max_bytes=self.config.max_body)

    def _changed(self) -> None:
        """Publish new events, save persist entries, and note chunk changes."""
        events = self.store.events_since(self._published) or []
        self._published = self.store.version
        if not events:
            return
        self.watchers.publish(events)
        if any(e.service.get("id") is not None for e in events):
            self.disks.dirty.set()
        if self.config.state_path is not None:
            now = self.store.persistent()
            if now != self._saved:
                try:
                    save_state(self.config.state_path, now)
                    self._saved = now
                except RegistryError as exc:
                    log.warning("saving state: %s", exc)

    async def _advertise(self) -> None:
        """Announce this registry over zeroconf with the cluster id of the secret it signs with."""
        cfg = self.config
        interfaces = listen_interfaces(cfg.host, cfg.mdns_interfaces)    # only where we listen
        if interfaces == []:
            log.info("listening on IPv6 address %s only: not announced over zeroconf "
                     "(clients name it with --registry %s)", cfg.host, self.url)
            return
        addrs = advertised_addresses(cfg.host, interfaces)
        self._advertiser = Advertiser(self.port, addrs, self.cluster, interfaces=interfaces,
                                      scheme="https" if cfg.tls.serving else "http")
        try:
            await self._advertiser.start()
        except (OSError, RuntimeError) as exc:     # no multicast: still serve
            log.warning("zeroconf advertising failed: %s", exc)
            self._advertiser = None

    async def _cluster_loop(self) -> None:
        """After `geryon init --rotate` (a watched secret's newest changes), announce the new
        cluster id: clients browse for the id of the secret they hold, the new one."""
        while True:
            await asyncio.sleep(DEFAULT_CLUSTER_RECHECK)
            now = cluster_id(signing_secret(self.config.secret))
            if now == self.cluster:
                continue
            log.info("the cluster secret changed: advertising cluster %s (was %s)", now, self.cluster)
            self.cluster = now
            if self._advertiser is not None:
                await self._advertiser.close()
            await self._advertise()

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.expire_interval)
            dead = self.store.expire(self.clock())
            self.sessions.ended(dead)
            if dead:
                self._changed()

    # -- HTTP ------------------------------------------------------------------------
    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response({"version": PROTOCOL_VERSION, "cluster": self.cluster,
                                  "store_version": self.store.version, "services": len(self.store),
                                  "heartbeat": self.config.heartbeat,
                                  "dead_after": self.config.dead_after})

    def _services(self, request: web.Request, services: list[Service]) -> web.Response:
        if "text/plain" in request.headers.get("Accept", ""):
            return web.Response(text="".join(s.line() + "\n" for s in services))
        return web.json_response({"version": self.store.version,
                                  "services": [s.to_wire() for s in services]})

    async def _index(self, request: web.Request) -> web.Response:
        return self._services(request, self.store.index())

    async def _find(self, request: web.Request) -> web.Response:
        doc = await self._json(request, _FIND)
        return self._services(request, self.store.find(as_pairs(doc.get("query") or [])))

    async def _update(self, request: web.Request) -> web.Response:
        doc = await self._json(request, UPDATE)
        service = self.store.update(doc["name"], as_pairs(doc.get("attrs") or []),
                                    owner=_owner_of(request))
        self._changed()
        return web.json_response({"ok": True, "service": service.to_wire()})

    async def _unregister(self, request: web.Request) -> web.Response:
        doc = await self._json(request, _UNREGISTER)
        self.store.unregister(doc["name"], owner=_owner_of(request))
        self._changed()
        return web.json_response({"ok": True})

    async def _ndb(self, request: web.Request) -> web.Response:
        return web.json_response(await self.disks.read())

    async def _ndb_edit(self, request: web.Request) -> web.Response:
        """Name disks: drop entries by name, append others; answered once the registry holds them."""
        self.disks.ndb_file()                       # no ndb file kept: refused before the body is read
        doc = await self._json(request, _NDB_EDIT)
        drop, add = doc.get("drop") or [], doc.get("add") or ""
        version = await self.disks.edit(drop, add, doc.get("base"), doc.get("text"))
        log.info("ndb %s: %d entries dropped, %d bytes added by %s", self.disks.path, len(drop), len(add),
                 _owner_of(request))
        return web.json_response({"ok": True, "version": version})

    # -- WebSockets ------------------------------------------------------------------
    async def _session(self, request: web.Request) -> web.StreamResponse:
        owner = _owner_of(request)
        session = request.headers.get(HEADER_CLIENT, "")
        if not _SESSION_ID.match(session):
            raise BadRequest("bad client id")
        return await self.sessions.serve(request, session, owner)

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        raw = web.WebSocketResponse(max_msg_size=4096, timeout=1.0, autoping=True,
                                    heartbeat=max(self.config.dead_after, 1.0))
        try:
            ws = await accept(request, raw, self.config.secret, self.identity,
                              what=f"watch from {request.remote}")
        except ChannelRefused:
            return raw
        await ws.send_json({"op": "snapshot", "version": self.store.version,
                            "services": [s.to_wire() for s in self.store.index()]})
        await self.watchers.serve(request, ws)
        return raw


async def serve(config: ServerConfig, stop: asyncio.Event) -> None:
    """Run a registry until `stop` is set (the CLI's entry point)."""
    async with RegistryServer(config) as server:
        print(f"registry: listening on {server.url} cluster {server.cluster}", flush=True)
        await stop.wait()


__all__: Sequence[str] = ["RegistryServer", "ServerConfig", "serve", "DEFAULT_PORT"]
