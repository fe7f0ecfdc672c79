"""`NodeDaemon`: one port serving a machine's chunks and cpu, registered with the registry.

It registers one service per chunk (`tcp!addr!port!CHUNK resource kfs id CHUNK name
NODE url geryon://addr:port/CHUNK ...`, so an ndb `master=NODE!CHUNK` resolves to it) and one cpu service
(`tcp!addr!port svc rstyx host NODE os ... ncpu ... load ... virtual ... memfree ...`, and `pool ROOM`
when it makes chunks on request from a `--chunk-pool`; an empty plain directory given as
`--disk` is made a chunk first), refreshes load (the virtual
load of dispatches accepted lately included, and also given apart: `geryon.node.virtualload`),
free memory and free space on every heartbeat, and unregisters when closed. The registry
client re-registers everything after a registry restart on its own. Not here: parsing
options or signals (the CLI does), the routes themselves (`chunkservice`, `cpuservice`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from geryon.node.defaults import DEFAULT_NODE_PORT, DEFAULT_REFRESH
from geryon.disks.allocate import ChunkPool
from geryon.disks.chunk import DEFAULT_CAPACITY, ChunkFS, create_chunk, read_capacity
from geryon.errors import GeryonError
from geryon.node.chunkservice import DEFAULT_CLAIM_LEASE, ChunkService, ServedChunk
from geryon.node.address import choose_address
from geryon.node.cpuservice import CpuService
from geryon.node.jobservice import JobService
from geryon.defaults import DEFAULT_STEP_OUTPUT_GRACE
from geryon.records.untar import UnpackLimits
from geryon.node.sessionservice import SessionService
from geryon.cluster.hostfacts import HostFacts, LoadSource, host_source
from geryon.disks.outputs import OUTPUT_CHUNK
from geryon.node.virtualload import DEFAULT_DISPATCH_LOAD, DEFAULT_VIRTUAL_SECONDS, VirtualLoad
from registry.auth import DEFAULT_CONTROL_BODY, MIN_SECRET_BYTES, ServerIdentity, auth_middleware
from registry.errors import RegistryError
from registry.guard import ConnectionGuard, ConnectionLimits, open_file_limit
from registry.listen import Listener, listen
from registry.signer import url_host
from registry.tls import TlsFiles, server_context

log = logging.getLogger(__name__)



DEFAULT_UNREGISTER_TIMEOUT = 3.0
"""Seconds spent unregistering at shutdown before leaving it to the session's end."""

DEFAULT_MAX_BODY = 1 << 30
"""Largest body held in memory (a job pack or an export; file writes stream to disk), in bytes."""


@dataclass(frozen=True)
class NodeDisk:
    """A chunk this node serves: `--disk NAME=PATH` (or `--replica NAME=PATH`, read-only)."""

    name: str
    path: str
    replica: bool = False


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node daemon needs; built by the CLI, passed down."""

    name: str = field(default_factory=socket.gethostname)
    disks: tuple[NodeDisk, ...] = ()
    cpus: int | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_NODE_PORT
    advertise: str | None = None
    secret: bytes = b""                       # the cluster secret: required, there is no open mode
    registry: Any = None                      # a RegistryClient (None: serve unregistered)
    work_dir: str | None = None
    refresh: float = DEFAULT_REFRESH
    load_source: LoadSource | None = None
    virtual_load: float = DEFAULT_DISPATCH_LOAD     # load one accepted dispatch adds (dsh's virtual load)
    virtual_seconds: float = DEFAULT_VIRTUAL_SECONDS  # --virtual-seconds: over which it decays
    pool: str | None = None                   # `--chunk-pool DIR`: chunks made on request
    pool_size: int | None = None              # capacity the pool may hand out (None: disk free)
    parent: str | None = None                 # --parent: a node name, tcp!host!port or url (taskfs tree)
    unpack: UnpackLimits = UnpackLimits()     # --unpack-limit/--unpack-files: job packs and exports
    claim_lease: float = DEFAULT_CLAIM_LEASE  # --claim-lease: a load's claim on a chunk, unrenewed
    tls: TlsFiles = TlsFiles()                # a certificate: serve https only (see registry.tls)
    limits: ConnectionLimits = ConnectionLimits()   # connections held at once, idle timeout (registry.guard)
    step_output_grace: float = DEFAULT_STEP_OUTPUT_GRACE  # --step-output-grace (geryon.node.heldoutputs)


def registry_host(registry: Any) -> str | None:
    """The host of the registry a client is configured with (None: found later, over zeroconf)."""
    url = getattr(registry, "url", None)
    if not isinstance(url, str) or not url:
        return None
    from urllib.parse import urlsplit

    return urlsplit(url).hostname


class NodeDaemon:
    """A running node: `async with NodeDaemon(config) as node:` serves until the block ends.

    Args:
        config: what to serve and where.
        clock: seconds, for the virtual load of accepted dispatches (tests pass their own).
    """

    def __init__(self, config: NodeConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        if len(config.secret or b"") < MIN_SECRET_BYTES:
            raise GeryonError(f"node {config.name}: a cluster secret is required (run `geryon init`)")
        self.config = config
        self.clock = clock
        self.address = choose_address(config.host, config.advertise, registry_host(config.registry))
        self.chunks: dict[str, ServedChunk] = {}
        self.notes: list[str] = []                # said once on stderr when serving starts
        for disk in config.disks:
            if disk.name in self.chunks:
                raise GeryonError(f"disk {disk.name} given twice")
            if not os.path.isdir(disk.path):
                raise GeryonError(f"disk {disk.name}: {disk.path}: no such directory")
            if not disk.replica and read_capacity(disk.path) is None and not os.listdir(disk.path):
                # An empty plain directory holds nothing to keep: make it a chunk a load can fill.
                create_chunk(disk.path, DEFAULT_CAPACITY)
                self.notes.append(f"disk {disk.name}: {disk.path} was an empty directory: made it a "
                                  f"{DEFAULT_CAPACITY >> 20}M chunk (`geryon disk new DIR --size N` makes other sizes)")
            self.chunks[disk.name] = ServedChunk(disk.name, ChunkFS(disk.path), disk.replica)
        self.pool: ChunkPool | None = None
        if config.pool is not None:
            self.pool = ChunkPool(config.pool, config.pool_size)
            for name, path, replica in self.pool.scan():
                if name in self.chunks:
                    raise GeryonError(f"disk {name} given twice (also in the chunk pool {config.pool})")
                self.chunks[name] = ServedChunk(name, ChunkFS(path), replica, pooled=True)
        self.source = config.load_source or host_source(config.cpus)
        self.identity = ServerIdentity.new(f"node:{config.name}", config.secret)
        self.port = config.port
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._listener: Listener | None = None
        self.guard: ConnectionGuard | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._registered: dict[str, tuple[tuple[str, str], ...]] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.cpu: CpuService | None = None
        self.jobs: JobService | None = None
        self._chunk_service: ChunkService | None = None
        self.sessions: SessionService | None = None
        self._failing = False
        self._sync_lock = asyncio.Lock()
        self._closed = False

    # -- names and attributes -------------------------------------------------------
    @property
    def cpu_service(self) -> str:
        """The cpu service's registry name."""
        return f"tcp!{self.address}!{self.port}"

    def chunk_service(self, chunk: str) -> str:
        """A chunk service's registry name, `tcp!addr!port!chunk` (names cannot hold `/`)."""
        return f"tcp!{self.address}!{self.port}!{chunk}"

    def chunk_url(self, chunk: str) -> str:
        """A chunk's `geryon://` URL."""
        return f"geryon://{self.url.split('://', 1)[1]}/{chunk}"

    def virtual_load(self, now: float) -> float:
        """The load added by the dispatches accepted lately (kept by the cpu service)."""
        return self.cpu.virtual.value(now) if self.cpu is not None else 0.0

    def cpu_attrs(self, facts: HostFacts, now: float) -> tuple[tuple[str, str], ...]:
        """The cpu service's attributes for these facts (load includes the virtual load, also given apart)."""
        virtual = self.virtual_load(now)
        attrs = (("svc", "rstyx"), ("host", self.config.name), ("url", self.url), ("os", facts.os),
                ("arch", facts.arch), ("ncpu", str(facts.ncpu)), ("load", f"{facts.load + virtual:.2f}"),
                ("virtual", f"{virtual:.2f}"),
                ("memfree", str(facts.mem_free)), ("memtotal", str(facts.mem_total)),
                ("running", str(len(self.cpu.running) if self.cpu else 0)))
        if self.pool is not None:
            attrs += (("pool", str(self.pool.room())),)
        return attrs

    def chunk_attrs(self, chunk: ServedChunk) -> tuple[tuple[str, str], ...]:
        usage = chunk.usage(cheap=True)
        attrs = [("resource", "kfs"), ("id", chunk.name), ("name", self.config.name),
                 ("url", self.chunk_url(chunk.name)),
                 ("capacity", str(usage["capacity"] if usage["capacity"] is not None else "none")),
                 ("free", str(usage["free"] if usage["free"] is not None else "none"))]
        if chunk.replica:
            attrs.append(("replica", "1"))
        return tuple(attrs)

    def services(self, only_cpu: bool = False) -> dict[str, tuple[tuple[str, str], ...]]:
        """Every service this node should have registered now (or just the cpu service)."""
        out = {} if only_cpu else {self.chunk_service(n): self.chunk_attrs(c)
                                   for n, c in sorted(self.chunks.items()) if n != OUTPUT_CHUNK}
        out[self.cpu_service] = self.cpu_attrs(self.source(), self.clock())
        return out

    # -- life cycle -----------------------------------------------------------------
    async def start(self) -> None:
        """Listen, then register (in the background: an absent registry does not stop us)."""
        cfg = self.config
        work_dir = cfg.work_dir
        if work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"geryon-node-{cfg.name}-")
            work_dir = self._tmp.name
        sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((cfg.host, cfg.port))
        except OSError as exc:
            sock.close()
            raise GeryonError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from exc
        self.port = sock.getsockname()[1]
        scheme = "https" if cfg.tls.serving else "http"
        self.url = f"{scheme}://{url_host(self.address)}:{self.port}"
        ident = self.identity
        self.cpu = CpuService(cfg.name, self.chunks, self.url, cfg.secret, work_dir, self._started,
                              unpack=cfg.unpack, identity=ident, source=self.source,
                              virtual=VirtualLoad(cfg.virtual_load, cfg.virtual_seconds), clock=self.clock)
        # Connections counted (registry.guard), then signatures from the headers, then each
        # route's body limit (control routes: small).
        app = web.Application(client_max_size=DEFAULT_MAX_BODY,
                              middlewares=[self._guarded,
                                           auth_middleware(cfg.secret, ident, max_body=DEFAULT_CONTROL_BODY)])
        self.jobs = JobService(cfg.name, self.chunks, self.url, cfg.secret, work_dir, unpack=cfg.unpack,
                               identity=ident, step_output_grace=cfg.step_output_grace)
        self.sessions = SessionService(cfg.name, self.source, cfg.secret, work_dir, parent=cfg.parent,
                                       advertise=self.address, registry=cfg.registry,
                                       identity=ident)
        chunk_service = ChunkService(self.chunks, secret=cfg.secret, pool=self.pool,
                                     on_change=self._sync if cfg.registry is not None else None,
                                     claim_lease=cfg.claim_lease,
                                     named=self._named if cfg.registry is not None else None)
        app.router.add_routes(chunk_service.routes() + self.cpu.routes() + self.jobs.routes()
                              + self.sessions.routes() + [web.get("/v1/node", self._info)])
        limits = cfg.limits.within(open_file_limit())
        # keepalive_timeout: also how long a connection may take to send its first headers.
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     keepalive_timeout=limits.idle_timeout)
        await self._runner.setup()
        assert self._runner.server is not None
        self.guard = ConnectionGuard(self._runner.server, limits, what=f"node {cfg.name}")
        ssl = server_context(cfg.tls) if cfg.tls.serving else None
        # Not a web.SockSite: a TLS handshake is counted by the guard and cut after idle_timeout
        # (asyncio's own TLS server waits 60 s, uncounted; registry.listen).
        self._listener = await listen(self._runner.server, self.guard, tls=ssl, sock=sock,
                                      handshake_timeout=limits.idle_timeout)
        await self.sessions.start(self.url)       # the link to --parent, if any
        if cfg.registry is not None:
            self._tasks.append(asyncio.create_task(self._refresh_loop()))
        self._tasks.append(asyncio.create_task(self._reclaim_loop(chunk_service)))
        self._chunk_service = chunk_service
        log.info("node %s listening on %s", cfg.name, self.url)

    async def _reclaim_loop(self, chunk_service: ChunkService) -> None:
        """Take back, now and then, the chunks of loads that died (their claims ran out)."""
        every = max(0.05, min(self.config.refresh, self.config.claim_lease / 4))
        while True:
            try:
                await chunk_service.reclaim()
            except Exception:                       # keep serving whatever went wrong
                log.exception("reclaiming chunks")
            await asyncio.sleep(every)

    async def _named(self, chunk: str) -> bool | None:
        """Does the registry name a disk on this node's `chunk`? None: it cannot be asked now."""
        reg = self.config.registry
        try:
            found = await asyncio.get_running_loop().run_in_executor(
                None, reg.find, [("host", self.config.name), ("chunk", chunk)])
        except RegistryError as exc:
            log.debug("asking the registry about chunk %s: %s", chunk, exc)
            return None
        return any(s.get("chunk") == chunk and s.get("host") == self.config.name for s in found)

    @web.middleware
    async def _guarded(self, request: web.Request, handler: Any) -> web.StreamResponse:
        assert self.guard is not None
        return await self.guard.middleware(request, handler)

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response({"name": self.config.name, "url": self.url,
                                  "chunks": sorted(self.chunks), "cpu": self.cpu_service,
                                  "jobs": self.jobs.info() if self.jobs is not None else {}})

    async def _started(self) -> None:
        """A dispatch was counted in the virtual load: tell the registry at once."""
        if self.config.registry is not None and self.cpu_service in self._registered:
            await self._sync(only_cpu=True)

    async def _sync(self, only_cpu: bool = False) -> None:
        """Register what is missing, update what changed (one sync at a time)."""
        async with self._sync_lock:
            await self._sync_locked(only_cpu)

    async def _sync_locked(self, only_cpu: bool) -> None:
        loop = asyncio.get_running_loop()
        want = await loop.run_in_executor(None, self.services, only_cpu)
        reg = self.config.registry
        for name, attrs in want.items():
            have = self._registered.get(name)
            if have == attrs:
                continue
            try:
                if have is None:
                    await loop.run_in_executor(None, reg.register, name, attrs)
                else:
                    await loop.run_in_executor(None, reg.update, name, attrs)
                self._registered[name] = attrs
                self._failing = False
            except RegistryError as exc:
                # A registry that is away warns once; the client re-announces when it is back.
                (log.debug if self._failing else log.warning)("registering %s: %s", name, exc)
                self._failing = True
                return
        for name in [] if only_cpu else [n for n in self._registered if n not in want]:
            try:                                    # a chunk deleted from the pool
                await loop.run_in_executor(None, reg.unregister, name)
                del self._registered[name]
            except RegistryError as exc:
                log.debug("unregister %s: %s", name, exc)

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await self._sync()
            except Exception:                       # keep serving whatever went wrong
                log.exception("refreshing registrations")
            await asyncio.sleep(self.config.refresh)

    async def close(self) -> None:
        """Unregister, stop commands, stop listening; idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self._unregister_all(), DEFAULT_UNREGISTER_TIMEOUT)
        except asyncio.TimeoutError:
            # The registry is away; our session's end removes the entries when it returns.
            log.warning("registry did not answer: leaving unregistration to the session's end")
        if self.cpu is not None:
            await self.cpu.close()
        if self.jobs is not None:
            await self.jobs.close()
        if self._chunk_service is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._chunk_service.close)
        if self.sessions is not None:
            await self.sessions.close()
        if self._listener is not None:
            await self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.guard is not None:
            self.guard.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def _unregister_all(self) -> None:
        reg = self.config.registry
        loop = asyncio.get_running_loop()
        for name in list(self._registered):
            try:
                await loop.run_in_executor(None, reg.unregister, name)
            except RegistryError as exc:
                log.debug("unregister %s: %s", name, exc)
            self._registered.pop(name, None)

    async def __aenter__(self) -> NodeDaemon:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve(config: NodeConfig, stop: asyncio.Event) -> None:
    """Run a node until `stop` is set (the CLI's entry point); prints one line when up."""
    async with NodeDaemon(config) as node:
        for note in node.notes:
            print(f"geryon: {note}", file=sys.stderr, flush=True)
        print(f"node {config.name} listening on {node.url}", flush=True)
        await stop.wait()
