"""The network client: a `Registry` over HTTP, with registrations that live in a session.

`RegistryClient` runs its own asyncio loop in one thread (`registry.loopthread.LoopThread`,
the class every client of ours uses), so it serves synchronous callers (the CLI, worker code) and never blocks theirs. Registrations ride one WebSocket
session with heartbeats; when it drops, the client reconnects with jittered backoff and
re-registers everything it owns, rediscovering the registry over zeroconf if it was
found that way. This module does not read the environment or the secret file (the CLI
does) and keeps no state on disk.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from registry.auth import cluster_id
from registry.channel import Channel, ChannelRefused
from registry.backoff import DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, Backoff
from registry.discovery import DEFAULT_DISCOVERY_TIMEOUT, discover, parse_registry_url
from registry.errors import (AuthenticationFailed, RegistryError, RegistryUnavailable,
                             error_from_wire)
from registry.loopthread import LoopThread
from registry.server import DEFAULT_MAX_BODY, HEADER_CLIENT, HEADER_OWNER
from registry.signer import Signer
from registry.store import DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT, AttrsLike, Service, as_pairs, merged
from registry import tls

if TYPE_CHECKING:
    from registry.watch import Watch

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_REQUEST_TIMEOUT = 5.0
"""Seconds one call may take, reconnection attempts included."""


class _Disconnected(Exception):
    """The session dropped while a request was in flight."""


class RegistryClient:
    """A registry reached over the network; a context manager (close() is idempotent).

    Args:
        url: `http://host:port` or `tcp!host!port`; None finds one over zeroconf.
        secret: the cluster secret (None: send unsigned requests).
        owner: who this client is, for registry(4) ownership checks.
        mdns_interfaces: interfaces to browse on (None: all).
        heartbeat: seconds between session heartbeats.
        dead_after: seconds of server silence after which the session is re-made.
        request_timeout: seconds a call may take before RegistryUnavailable.
        discovery_timeout: seconds each zeroconf browse may take.
        backoff_base, backoff_cap: reconnection delays (jittered, doubling).
    """

    def __init__(self, url: str | None = None, *, secret: bytes | None = None, owner: str = "",
                 mdns_interfaces: Sequence[str] | None = None,
                 heartbeat: float = DEFAULT_HEARTBEAT, dead_after: float = DEFAULT_DEAD_AFTER,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 discovery_timeout: float = DEFAULT_DISCOVERY_TIMEOUT,
                 backoff_base: float = DEFAULT_BACKOFF_BASE,
                 backoff_cap: float = DEFAULT_BACKOFF_CAP) -> None:
        self._fixed = parse_registry_url(url) if url else None
        self._secret = secret
        self._signer = Signer(secret)
        self.owner = owner
        self.client_id = f"{os.getpid()}-{secrets.token_hex(6)}"
        self.mdns_interfaces = tuple(mdns_interfaces) if mdns_interfaces else None
        self.heartbeat = heartbeat
        self.dead_after = dead_after
        self.request_timeout = request_timeout
        self.discovery_timeout = discovery_timeout
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self._url: str | None = self._fixed
        self._owned: dict[str, tuple[tuple[str, str], ...]] = {}
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._ws: Channel | None = None
        self._session_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._warned: set[str] = set()
        self._io = LoopThread("geryon-registry-client", on_closed=lambda: RegistryError("client is closed"),
                              finish=self._close_http)
        self._loop = self._io.loop
        self._call(self._setup())

    # -- the Registry protocol -------------------------------------------------------
    def register(self, name: str, attrs: AttrsLike = ()) -> Service:
        """Register `name`; it lives as long as this client (unless `persist 1`)."""
        return self._call(self._register(name, as_pairs(attrs)))

    def update(self, name: str, attrs: AttrsLike) -> Service:
        """Add or change attributes of a service this owner holds."""
        return self._call(self._update(name, as_pairs(attrs)))

    def unregister(self, name: str) -> None:
        """Remove a service this owner holds."""
        self._call(self._unregister(name))

    def find(self, query: AttrsLike = ()) -> list[Service]:
        """Services matching every `attr val` (`*`: attribute present)."""
        doc = self._call(self._http_json("POST", "/v1/find",
                                         {"query": [list(p) for p in as_pairs(query)]}))
        return [Service.from_wire(s) for s in doc["services"]]

    def index(self) -> list[Service]:
        """Every service."""
        doc = self._call(self._http_json("GET", "/v1/index"))
        return [Service.from_wire(s) for s in doc["services"]]

    # -- more ------------------------------------------------------------------------
    def ndb(self) -> dict[str, Any]:
        """The registry's ndb file: `{"path", "text", "version"}`.

        Raises:
            ServiceNotFound: the registry keeps no ndb file.
        """
        return self._call(self._http_json("GET", "/v1/ndb"))

    def edit_ndb(self, drop: Sequence[str], add: str, base: str | None = None) -> str:
        """Drop the entries named `drop` from the registry's ndb file and append `add` (ndb
        text); returns the file's new version. The registry serves the new names on return.

        Raises:
            Conflict: `base` is given and the file changed since that version.
        """
        doc = self._call(self._http_json("POST", "/v1/ndb", {"drop": list(drop), "add": add, "base": base}))
        return str(doc.get("version", ""))

    def put_ndb(self, text: str, base: str | None = None) -> str:
        """Make `text` the registry's whole ndb file; returns its new version.

        Raises:
            Conflict: `base` is given and the file changed since that version.
        """
        doc = self._call(self._http_json("POST", "/v1/ndb", {"text": text, "base": base}))
        return str(doc.get("version", ""))

    def info(self) -> dict[str, Any]:
        """The server's `/v1/info`: protocol version, cluster id, store version."""
        return self._call(self._http_json("GET", "/v1/info"))

    @property
    def url(self) -> str | None:
        """The registry in use (None until found)."""
        return self._url

    @property
    def owned(self) -> list[str]:
        """Names this client registered and re-announces."""
        return list(self._owned)

    def watch(self, *, initial: bool = False) -> Watch:
        """Follow changes as they happen; `initial` also yields the current services as adds."""
        from registry.watch import Watch
        return Watch(self, initial)

    def close(self) -> None:
        """End the session (its non-persist services go), stop the thread; idempotent."""
        self._io.close()   # cancels the session (its non-persist services go), then closes _http

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- the loop thread -------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._io.call(coro)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _setup(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.request_timeout),
                                           connector=tls.connector())
        self._connected = asyncio.Event()
        self._op_lock = asyncio.Lock()
        self._locate_lock = asyncio.Lock()

    async def _close_http(self) -> None:
        if getattr(self, "_http", None) is not None:
            await self._http.close()

    def _warn_once(self, key: str, msg: str, *args: Any) -> None:
        if key in self._warned:
            log.debug(msg, *args)
        else:
            self._warned.add(key)
            log.warning(msg, *args)

    # -- finding and calling the server ----------------------------------------------
    def _ids(self) -> dict[str, str]:
        """Who we are: headers every request carries (signed, see `registry.auth`)."""
        return {HEADER_OWNER: self.owner, HEADER_CLIENT: self.client_id}

    async def _locate(self) -> str:
        if self._url is not None:
            return self._url
        async with self._locate_lock:
            if self._url is not None:
                return self._url
            cluster = cluster_id(self._secret)
            urls = await asyncio.to_thread(discover, self.discovery_timeout, cluster=cluster,
                                           interfaces=self.mdns_interfaces)
            if not urls:
                raise RegistryUnavailable(
                    f"no registry of cluster {cluster} found over zeroconf in "
                    f"{self.discovery_timeout:g}s (use --registry URL or GERYON_REGISTRY)")
            self._url = urls[0]
            log.info("found registry %s over zeroconf", self._url)
            return self._url

    def _lost(self, url: str | None) -> None:
        if self._fixed is None and url is not None and self._url == url:
            self._url = None                     # rediscover: it may be back elsewhere

    async def _http_json(self, method: str, path: str, payload: Any = None) -> dict[str, Any]:
        deadline = self._loop.time() + self.request_timeout
        backoff = Backoff(self.backoff_base, self.backoff_cap)
        body = json.dumps(payload).encode() if payload is not None else b""
        while True:
            url = None
            try:
                url = await self._locate()
                async with await self._signer.send(self._http, method, url, path, body,
                                                   headers=self._ids()) as resp:
                    raw = await resp.read()
                    status = resp.status
                break
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError, OSError,
                    RegistryUnavailable) as exc:
                self._lost(url)
                delay = backoff.next()
                if self._loop.time() + delay > deadline:
                    if isinstance(exc, RegistryUnavailable):
                        raise
                    raise RegistryUnavailable(f"registry {url}: {str(exc) or type(exc).__name__}") from exc
                await asyncio.sleep(delay)
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {"error": f"HTTP {status}: {raw[:200].decode(errors='replace')}", "kind": "error"}
        if status != 200 or not isinstance(doc, dict):
            raise error_from_wire(str(doc.get("kind", "error")), str(doc.get("error", f"HTTP {status}")))
        return doc

    # -- the session -----------------------------------------------------------------
    async def _register(self, name: str, attrs: tuple[tuple[str, str], ...]) -> Service:
        msg = {"op": "register", "name": name, "attrs": [list(p) for p in attrs]}
        service = await self._session_op(msg)
        assert service is not None
        self._owned[name] = service.attrs
        return service

    async def _update(self, name: str, attrs: tuple[tuple[str, str], ...]) -> Service:
        if name in self._owned:
            msg = {"op": "update", "name": name, "attrs": [list(p) for p in attrs]}
            service = await self._session_op(msg)
            assert service is not None
            self._owned[name] = merged(self._owned.get(name, ()), attrs)
            return service
        doc = await self._http_json("POST", "/v1/update", {"name": name, "attrs": [list(p) for p in attrs]})
        return Service.from_wire(doc["service"])

    async def _unregister(self, name: str) -> None:
        async with self._op_lock:
            self._owned.pop(name, None)          # no re-announce from now on
        await self._http_json("POST", "/v1/unregister", {"name": name})

    async def _session_op(self, msg: dict[str, Any]) -> Service | None:
        """Send one op over the session, waiting for (re)connection; raise its error."""
        if self._session_task is None:
            self._session_task = self._spawn(self._session_loop())
        deadline = self._loop.time() + self.request_timeout
        while True:
            left = deadline - self._loop.time()
            try:
                await asyncio.wait_for(self._connected.wait(), max(left, 0.001))
            except asyncio.TimeoutError:
                raise RegistryUnavailable(self._last_error or "registry not reachable") from None
            async with self._op_lock:
                ws = self._ws
                if ws is None or not self._connected.is_set():
                    continue
                try:
                    reply = await self._ws_request(ws, msg, max(deadline - self._loop.time(), 0.001))
                except (_Disconnected, ConnectionError, asyncio.TimeoutError):
                    if self._loop.time() >= deadline:
                        raise RegistryUnavailable("registry connection lost") from None
                    continue
                if "error" in reply:
                    raise error_from_wire(str(reply.get("kind")), str(reply["error"]))
                if msg["op"] == "register":
                    self._owned[msg["name"]] = Service.from_wire(reply["service"]).attrs
                return Service.from_wire(reply["service"]) if reply.get("service") else None

    async def _ws_request(self, ws: Channel, msg: dict[str, Any],
                          timeout: float) -> dict[str, Any]:
        self._next_id += 1
        rid = self._next_id
        fut: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._pending[rid] = fut
        try:
            await ws.send_str(json.dumps({**msg, "id": rid}))
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(rid, None)

    _last_error = ""

    async def _session_loop(self) -> None:
        backoff = Backoff(self.backoff_base, self.backoff_cap)
        while True:
            url = None
            try:
                url = await self._locate()
                ws = await self._signer.connect(
                    self._http, url, "/v1/session", headers=self._ids(), what="registry session",
                    autoping=True, max_msg_size=DEFAULT_MAX_BODY,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=1.0))
            except aiohttp.WSServerHandshakeError as exc:
                self._lost(url)
                err: RegistryError = (AuthenticationFailed("authentication failed (check the cluster secret)")
                                      if exc.status == 401 else RegistryUnavailable(f"{url}: {exc}"))
                self._last_error = str(err)
                self._warn_once(f"session {exc.status}", "registry session refused: %s", err)
            except ChannelRefused as exc:
                self._lost(url)
                self._last_error = f"authentication failed: {exc}"
                self._warn_once("session handshake", "registry session refused: %s", exc)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, RegistryUnavailable) as exc:
                self._lost(url)
                self._last_error = f"registry {url or ''}: {exc or type(exc).__name__}".strip()
                self._warn_once("session connect", "%s; retrying", self._last_error)
            else:
                await self._serve_session(ws, backoff)
                self._lost(url)
            await asyncio.sleep(backoff.next())

    async def _serve_session(self, ws: Channel, backoff: Backoff) -> None:
        self._last_heard = self._loop.time()
        reader = self._spawn(self._read(ws))
        pinger = self._spawn(self._ping(ws))
        try:
            async with self._op_lock:
                self._ws = ws
                for name, attrs in list(self._owned.items()):
                    reply = await self._ws_request(ws, {"op": "register", "name": name,
                                                        "attrs": [list(p) for p in attrs]},
                                                   self.request_timeout)
                    if "error" in reply:
                        self._warn_once(f"reannounce {name}", "re-registering %s: %s", name, reply["error"])
            if self._owned:
                log.info("session up: re-registered %d services", len(self._owned))
            self._connected.set()
            self._warned.clear()
            backoff.reset()
            await asyncio.wait({reader, pinger}, return_when=asyncio.FIRST_COMPLETED)
        except (_Disconnected, ConnectionError, asyncio.TimeoutError, aiohttp.ClientError) as exc:
            log.debug("session lost: %s", exc)
        finally:
            self._connected.clear()
            self._ws = None
            for task in (reader, pinger):
                task.cancel()
            await asyncio.gather(reader, pinger, return_exceptions=True)
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(_Disconnected())
            await ws.close()

    async def _read(self, ws: Channel) -> None:
        async for msg in ws:
            self._last_heard = self._loop.time()
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                doc = json.loads(msg.data)
            except ValueError:
                continue
            if not isinstance(doc, dict):
                continue
            if doc.get("op") == "hello":           # the server's liveness settings win
                self._server_heartbeat = float(doc.get("heartbeat") or self.heartbeat)
                continue
            rid = doc.get("id")
            fut = self._pending.get(rid) if isinstance(rid, int) else None
            if fut is not None and not fut.done():
                fut.set_result(doc)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(_Disconnected())

    _server_heartbeat: float | None = None

    async def _ping(self, ws: Channel) -> None:
        while True:
            await asyncio.sleep(min(self.heartbeat, self._server_heartbeat or self.heartbeat))
            if self._loop.time() - self._last_heard > self.dead_after:
                log.warning("registry silent for %.1fs: reconnecting", self.dead_after)
                return
            await ws.send_str('{"op":"ping"}')
