"""rcpu: run a command block on a cpu of the cluster, with named disks mounted there.

`Rcpu.run` picks a live cpu (round robin by default: the seed's `nextcpu`), an output
disk on that cpu's host (`d<n>.cpu`, round robin per host: the seed's `finddisk`),
ships `--export` files if asked, and streams the command's stdout and stderr back until
it exits, returning its exit status. A cpu that cannot be reached is dropped from the
pool at once and the next is tried; the pool follows registry events, so cpus that die
or join are seen without polling. Not here: serving commands (`geryon.node.cpuservice`).
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import aiohttp

from geryon.errors import GeryonError, UnknownDisk
from geryon.cluster.pick import CpuInfo, NoCpu, Pick, RoundRobin
from geryon.disks.remote import NodeUnavailable, disk_url, parse_node_url
from registry.channel import Channel
from registry.errors import RegistryError
from registry.signer import Signer
from registry.errors import RegistryError
from registry.store import EventKind, Service
from geryon.net.aio import node_http
from geryon.defaults import DEFAULT_RCPU_CONNECT_TIMEOUT as DEFAULT_CONNECT_TIMEOUT

log = logging.getLogger(__name__)

CPU_QUERY = (("svc", "rstyx"),)
"""How cpu services are found in the registry."""

DISK_QUERY = (("chunk", "*"),)
"""How named disks are found in the registry (the cpus' output disks among them)."""

CPU_DISK_SUFFIX = ".cpu"
"""Named disks ending in this are cpus' output disks (the seed's `d<n>.cpu`)."""


class CommandRefused(GeryonError):
    """The node would not run the command (bad disk, missing export, ...)."""


@dataclass(frozen=True)
class RunResult:
    """How a command ended: its exit status (128+N if killed by signal N) and where it ran."""

    status: int
    host: str
    cpu: str
    cpudisk: str | None


class CpuPool:
    """The live cpu services and the cpus' output disks (`*.cpu`), kept current from
    registry events; a context manager.

    Args:
        registry: a `Registry` (a `RegistryClient` to follow events; any other is re-read
            on every `live()` call).
        follow: watch registry events (else re-query on each `live()`, and know no disks).
    """

    def __init__(self, registry: Any, *, follow: bool = True) -> None:
        self.registry = registry
        self._cpus: dict[str, CpuInfo] = {}
        self._disks: dict[str, Service] | None = None      # *.cpu disks, when following
        self._dead: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch = None
        if follow and hasattr(registry, "watch"):
            self._watch = registry.watch(initial=False)
            self._reload()
            disks = {s.name: s for s in registry.find(DISK_QUERY) if s.name.endswith(CPU_DISK_SUFFIX)}
            with self._lock:
                self._disks = disks
            self._thread = threading.Thread(target=self._follow, name="geryon-cpu-pool", daemon=True)
            self._thread.start()

    def _reload(self) -> None:
        services = self.registry.find(CPU_QUERY)
        with self._lock:
            self._cpus = {s.name: CpuInfo.from_service(s) for s in services}

    def _follow(self) -> None:
        assert self._watch is not None
        while not self._stop.is_set():
            try:
                event = self._watch.get(timeout=0.2)
            except RegistryError as exc:
                log.warning("cpu pool: %s", exc)
                return
            if event is None:
                continue
            service = Service(event.service.name, event.service.attrs)
            if service.name.endswith(CPU_DISK_SUFFIX):
                with self._lock:
                    assert self._disks is not None
                    if event.kind is EventKind.REMOVE or not service.matches(DISK_QUERY):
                        self._disks.pop(service.name, None)
                    else:
                        self._disks[service.name] = service
            if not service.matches(CPU_QUERY):
                continue
            with self._lock:
                if event.kind is EventKind.REMOVE:
                    self._cpus.pop(event.service.name, None)
                else:
                    self._cpus[event.service.name] = CpuInfo.from_service(event.service)
                    if event.kind is EventKind.ADD:
                        self._dead.discard(event.service.name)

    def live(self) -> list[CpuInfo]:
        """Cpus registered now, less those found unreachable since they registered."""
        if self._watch is None:
            self._reload()
        with self._lock:
            return [c for n, c in self._cpus.items() if n not in self._dead]

    def cpu_disks(self) -> list[Service] | None:
        """The cpus' output disks (`*.cpu`) registered now; None when not following events."""
        with self._lock:
            return None if self._disks is None else list(self._disks.values())

    def mark_dead(self, name: str) -> None:
        """Skip `name` until it registers again."""
        with self._lock:
            self._dead.add(name)

    def close(self) -> None:
        """Stop following events; idempotent."""
        self._stop.set()
        if self._watch is not None:
            self._watch.close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> CpuPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cpu_disks(services: Iterable[Service], host: str) -> list[tuple[str, str]]:
    """(name, url) of the live output disks (`*.cpu`) on `host`, in name order."""
    out = [(s.name, s.get("addr") or "") for s in services
           if s.name.endswith(CPU_DISK_SUFFIX) and s.get("host") == host and s.get("addr")]
    return sorted(out)


def next_after(names: Sequence[str], last: str | None) -> str:
    """Round robin: the first of `names` (sorted) after `last`, wrapping around."""
    return next((n for n in names if last is not None and n > last), names[0])


def pack_export(directory: str) -> tuple[str, bytes]:
    """A directory as a reproducible tar (sorted, mtime 0, root-owned) and its sha256."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirs, files in os.walk(directory):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(dirpath, name)
                info = tar.gettarinfo(full, arcname=os.path.relpath(full, directory))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if info.isfile():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    data = buf.getvalue()
    return hashlib.sha256(data).hexdigest(), data


class Rcpu:
    """Runs commands on cpus of one cluster; a context manager.

    Args:
        registry: the cluster's registry (a `RegistryClient`).
        secret: the cluster secret, to sign requests to nodes.
        pick: how to choose a cpu (default round robin).
        pool: the live cpus (default: a `CpuPool` following `registry`).
        clock: seconds, passed to `pick`.
        disk_state: per-host last output disk (round robin state, kept by the caller).
    """

    def __init__(self, registry: Any, secret: bytes | None = None, *, pick: Pick | None = None,
                 pool: CpuPool | None = None, clock: Callable[[], float] = time.monotonic,
                 disk_state: dict[str, str] | None = None,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        self.registry = registry
        self.secret = secret
        self.signer = Signer(secret)
        self.pick = pick or RoundRobin()
        self._own_pool = pool is None
        self.pool = pool or CpuPool(registry)
        self.clock = clock
        self.disk_state = disk_state if disk_state is not None else {}
        self.connect_timeout = connect_timeout

    def close(self) -> None:
        """Stop the pool if this object made it; idempotent."""
        if self._own_pool:
            self.pool.close()

    def __enter__(self) -> Rcpu:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _disk_urls(self, disks: Sequence[str]) -> list[dict[str, str]]:
        out = []
        for disk in disks:
            if disk.startswith(("geryon://", "http://", "https://", "tcp!")):
                out.append({"name": parse_node_url(disk)[1], "url": disk})
                continue
            url = disk_url(disk, self.registry)
            if url is None:
                raise UnknownDisk(f"{disk}: no such disk in the registry (is it named in the ndb file?)")
            out.append({"name": disk, "url": url})
        return out

    def _cpu_disk(self, host: str) -> dict[str, str] | None:
        # The pool follows the registry's events: no registry round trip per run; a host
        # it knows no disk of is asked about (a disk registered a moment ago).
        known = getattr(self.pool, "cpu_disks", lambda: None)()
        disks = cpu_disks(known, host) if known is not None else []
        if not disks:
            disks = cpu_disks(self.registry.find(DISK_QUERY), host)
        if not disks:
            log.info("no output disk (*.cpu) on %s: $cpudisk is a directory of its own on the node", host)
            return None
        name = next_after([n for n, _ in disks], self.disk_state.get(host))
        self.disk_state[host] = name
        return {"name": name, "url": dict(disks)[name]}

    def run(self, cmd: str | Sequence[str], disks: Sequence[str] = (), *,
            stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
            export: str | None = None, env: dict[str, str] | None = None,
            cpu: CpuInfo | None = None, claim: str | None = None) -> RunResult:
        """Run `cmd` on the next cpu with `disks` under `$n`; stream its output.

        Args:
            cmd: a command block `{ ... }`, a shell string, or an argv.
            disks: disk names (resolved through the registry) or `geryon://` URLs.
            stdout, stderr: where the command's output goes (default: ours).
            export: a local directory to ship, seen as `$n/client`.
            env: extra environment for the command.
            cpu: run there instead of picking (dsh uses this).
            claim: the token of a claim on `cpu` (`POST /v1/cpu/claim`), so the node does not
                count this dispatch in its virtual load a second time.
        Raises:
            GeryonError: no live cpu, unknown disk, refused command.
        """
        specs = self._disk_urls(disks)
        packed = pack_export(export) if export else None
        out = stdout or _stdio(1)
        err = stderr or _stdio(2)
        tried: set[str] = set()
        while True:
            target = cpu
            if target is None:
                live = [c for c in self.pool.live() if c.name not in tried]
                try:
                    target = self.pick.pick(live, self.clock(), [d["name"] for d in specs])
                except NoCpu:
                    raise GeryonError("no live cpu to run on" + (f" (unreachable: {', '.join(sorted(tried))})"
                                                                if tried else "")) from None
            cpudisk = self._cpu_disk(target.host)
            request = {"cmd": cmd if isinstance(cmd, str) else list(cmd), "disks": specs,
                       "cpudisk": cpudisk, "env": env or {},
                       "export": packed[0] if packed else None}
            if claim is not None and target is cpu:
                request["claim"] = claim
            try:
                status = asyncio.run(self._run(target, request, packed, out, err))
            except NodeUnavailable as exc:
                if cpu is not None:
                    raise
                log.info("cpu %s unreachable (%s): trying the next", target.name, exc)
                self.pool.mark_dead(target.name)
                tried.add(target.name)
                continue
            return RunResult(status, target.host, target.name, cpudisk["name"] if cpudisk else None)

    async def _run(self, cpu: CpuInfo, request: dict[str, Any], packed: tuple[str, bytes] | None,
                   out: BinaryIO, err: BinaryIO) -> int:
        async with node_http(sock_connect=self.connect_timeout) as http:
            try:
                if packed is not None:
                    await self._export(http, cpu, *packed)
                ws = await self.signer.connect(http, cpu.url, "/v1/cpu/run", what=f"rcpu on {cpu.name}",
                                               max_msg_size=0, heartbeat=10.0)
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 401:
                    raise GeryonError(f"cpu {cpu.name}: authentication failed (check the cluster secret)") from exc
                raise NodeUnavailable(f"cpu {cpu.name}: {exc}") from exc
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError, OSError) as exc:
                raise NodeUnavailable(f"cpu {cpu.name}: {exc}") from exc
            except RegistryError as exc:            # the handshake failed, or not a node
                raise GeryonError(f"cpu {cpu.name}: {exc}") from exc
            async with ws:
                await ws.send_str(json.dumps(request))
                return await self._relay(ws, cpu, out, err)

    async def _export(self, http: aiohttp.ClientSession, cpu: CpuInfo, digest: str, data: bytes) -> None:
        path = f"/v1/cpu/exports/{digest}"
        async with await self.signer.send(http, "GET", cpu.url, path) as resp:
            if resp.status == 200:
                return
        async with await self.signer.send(http, "PUT", cpu.url, path, data) as resp:
            if resp.status != 200:
                raise CommandRefused(f"cpu {cpu.name}: export refused: {(await resp.text())[:200]}")

    async def _relay(self, ws: Channel, cpu: CpuInfo, out: BinaryIO,
                     err: BinaryIO) -> int:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                sink = out if msg.data[:1] == b"\x01" else err
                sink.write(msg.data[1:])
                sink.flush()
            elif msg.type == aiohttp.WSMsgType.TEXT:
                doc = json.loads(msg.data)
                if doc.get("op") == "exit":
                    return int(doc["status"])
                if doc.get("op") == "error":
                    raise CommandRefused(f"cpu {cpu.name}: {doc.get('error')}")
        raise GeryonError(f"cpu {cpu.name}: connection lost before the command ended")


def _stdio(fd: int) -> BinaryIO:
    import sys
    stream = sys.stdout if fd == 1 else sys.stderr
    return stream.buffer if hasattr(stream, "buffer") else stream  # type: ignore[return-value]


_LAST: dict[str, str] = {}
_DISKS: dict[str, dict[str, str]] = {}


def rcpu(cmd: str | Sequence[str], disks: Sequence[str] = (), *, registry: Any = None,
         secret: bytes | None = None, **options: Any) -> RunResult:
    """Run `cmd` on the next cpu round robin (remembered per registry in this process).

    Args:
        cmd: a command block, shell string or argv.
        disks: disk names or `geryon://` URLs, seen by the command as `$n/<name>`.
        registry: the cluster's registry (None: find one over zeroconf for this call).
        secret: the cluster secret.
        options: see `Rcpu.run` (stdout, stderr, export, env).
    """
    if registry is None:
        from registry.client import RegistryClient
        with RegistryClient(None, secret=secret) as found:
            return rcpu(cmd, disks, registry=found, secret=secret, **options)
    key = str(getattr(registry, "url", None) or id(registry))
    pick = RoundRobin(_LAST.get(key))
    with Rcpu(registry, secret, pick=pick, pool=CpuPool(registry, follow=False),
              disk_state=_DISKS.setdefault(key, {})) as runner:
        try:
            return runner.run(cmd, disks, **options)
        finally:
            if pick.last is not None:
                _LAST[key] = pick.last
