"""The cluster as the dashboard shows it: nodes, disks and services, refreshed in the background.

`ClusterWatch` reads the registry (every service, the ndb file naming disks) and every
node's own reports (`GET /v1/cpu/load`: load, memory, running commands; `GET /v1/sessions`:
taskfs sessions), signed with the cluster secret, once every `refresh` seconds, and keeps
the last `ClusterSnapshot`: pages render from it and never wait on the network. It only
reads. What it remembers makes what the registry forgets visible: a node seen before and
gone now is shown dead, with when it went; services are shown with how long this
dashboard has seen them (the registry keeps no registration times). Disks' checksum state
comes from each copy's node (`check`, which reads the whole copy), at most once every
`check_every` seconds per copy.

Not here: HTML (`geryon.ui.pages`), the job history (`geryon.ui.server` reads it).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import aiohttp

import ndb
from geryon.net.aio import UNREACHABLE, node_http
from registry.disks import disk_names
from registry.errors import RegistryError, ServiceNotFound
from registry.signer import Signer
from registry.store import Service
from geryon.defaults import DEFAULT_UI_REFRESH as DEFAULT_REFRESH

log = logging.getLogger(__name__)

DEFAULT_NODE_TIMEOUT = 3.0
"""Seconds a node may take to report before it is shown unreachable."""

DEFAULT_CHECK_EVERY = 3600.0
"""Seconds between checksum checks of one disk copy (a check reads the whole copy)."""

DEFAULT_CHECK_TIMEOUT = 120.0
"""Seconds one copy's checksum check may take."""

DEFAULT_FORGET_DEAD = 3600.0
"""Seconds a dead node stays listed."""


class NodeState(StrEnum):
    """A node as the dashboard saw it."""

    LIVE = "live"                    # registered
    UNREACHABLE = "unreachable"      # the registry did not answer: as last seen
    DEAD = "dead"                    # gone from the registry


@dataclass(frozen=True)
class NodeRow:
    """One node: what the registry says, overlaid with what the node reports itself."""

    name: str
    url: str = ""
    os: str = ""
    arch: str = ""
    ncpu: int = 0
    load: float = 0.0
    virtual: float = 0.0
    mem_free: int = 0
    mem_total: int = 0
    running: int = 0                 # commands (rcpu, dsh) the node runs now
    sessions: int = 0                # taskfs sessions
    reserved: int = 0                # taskfs slots reserved
    state: str = "live"              # a NodeState: live | unreachable | dead
    since: float | None = None       # when it became unreachable or dead (wall clock)
    chunks: tuple[str, ...] = ()


@dataclass(frozen=True)
class CopyRow:
    """One copy of a disk: an ndb entry's master `host!chunk`."""

    entry: str
    host: str
    chunk: str
    live: bool
    capacity: int | None = None
    free: int | None = None
    checksum: str = "not checked"


@dataclass(frozen=True)
class DiskRow:
    """One ndb-named disk and its chain of copies (master first, then replicas)."""

    name: str
    format: str
    copies: tuple[CopyRow, ...]

    @property
    def live_copy(self) -> str:
        """The first copy whose chunk is served now (reads go there), '' if none."""
        return next((c.entry for c in self.copies if c.live), "")


@dataclass(frozen=True)
class ServiceRow:
    name: str
    line: str
    first_seen: float


@dataclass(frozen=True)
class ClusterSnapshot:
    """Everything the cluster page shows, as of `taken`."""

    taken: float
    registry: str = ""
    error: str = ""
    nodes: tuple[NodeRow, ...] = ()
    disks: tuple[DiskRow, ...] = ()
    services: tuple[ServiceRow, ...] = ()
    version: int = 0                 # changes whenever what is shown changes


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _float(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def node_from_service(svc: Service) -> NodeRow:
    """A node as its cpu service (`svc rstyx`) describes it in the registry."""
    return NodeRow(name=svc.get("host") or svc.name, url=svc.get("url") or "", os=svc.get("os") or "",
                   arch=svc.get("arch") or "", ncpu=_int(svc.get("ncpu")), load=_float(svc.get("load")),
                   virtual=_float(svc.get("virtual")), mem_free=_int(svc.get("memfree")),
                   mem_total=_int(svc.get("memtotal")), running=_int(svc.get("running")))


def with_report(node: NodeRow, load: Any, sessions: Any) -> NodeRow:
    """`node` overlaid with its own reports (`/v1/cpu/load`, `/v1/sessions`); bad fields are ignored."""
    changes: dict[str, Any] = {}
    if isinstance(load, dict):
        for key, attr, conv in (("os", "os", str), ("arch", "arch", str), ("ncpu", "ncpu", _int),
                                ("mem_free", "mem_free", _int), ("mem_total", "mem_total", _int),
                                ("running", "running", _int), ("virtual", "virtual", _float)):
            if key in load:
                changes[attr] = conv(load[key])
        if "load" in load:
            changes["load"] = _float(load["load"]) + _float(load.get("virtual"))
    if isinstance(sessions, dict):
        changes["sessions"] = _int(sessions.get("sessions"))
        changes["reserved"] = _int(sessions.get("reserved"))
    return replace(node, **changes)


def disks_from(ndb_text: str, services: list[Service], checks: dict[tuple[str, str], str]) -> tuple[DiskRow, ...]:
    """The ndb-named disks with their copy chains, liveness from the chunk services, room and checks."""
    try:
        named = {d.name: d for d in disk_names(ndb.parse(ndb_text, "registry"))}
    except ndb.NdbError as exc:
        log.info("the registry's ndb file does not parse: %s", exc)
        return ()
    chunks = {(s.get("name"), s.get("id")): s for s in services if s.get("id") is not None and s.get("name")}
    replicas = {d.replica for d in named.values() if d.replica}
    rows = []
    for name in sorted(named):
        if name in replicas and not name.endswith(".cpu"):
            continue                 # shown in its master's chain
        copies, entry, seen = [], named[name], set()
        while entry is not None and entry.name not in seen:
            seen.add(entry.name)
            svc = chunks.get((entry.host, entry.chunk))
            copies.append(CopyRow(entry.name, entry.host, entry.chunk, svc is not None,
                                  _int(svc.get("capacity"), -1) if svc else None,
                                  _int(svc.get("free"), -1) if svc else None,
                                  checks.get((entry.host, entry.chunk), "not checked")))
            entry = named.get(entry.replica) if entry.replica else None
        rows.append(DiskRow(name, named[name].format or "", tuple(copies)))
    return tuple(rows)


def check_text(report: Any) -> str:
    """A node's `check` answer as one word or phrase."""
    if not isinstance(report, dict):
        return "unknown"
    if not report.get("has_manifest"):
        return "no manifest"
    damaged = report.get("damaged") or []
    if damaged:
        return f"DAMAGED: {len(damaged)} files"
    return f"ok ({_int(report.get('verified'))} verified)"


class ClusterWatch:
    """The last reading of the cluster, refreshed by a task of the running loop.

    Args:
        registry: a `registry.client.RegistryClient` (or anything with `index()` and `ndb()`),
            called in threads.
        secret: the cluster secret, to sign requests to nodes.
        refresh, node_timeout, check_every, forget_dead: see the DEFAULT_* values.
        clock: wall-clock seconds (times shown to people).
    """

    def __init__(self, registry: Any, secret: bytes, *, refresh: float = DEFAULT_REFRESH,
                 node_timeout: float = DEFAULT_NODE_TIMEOUT, check_every: float = DEFAULT_CHECK_EVERY,
                 forget_dead: float = DEFAULT_FORGET_DEAD, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.signer = Signer(secret)
        self.refresh = refresh
        self.node_timeout = node_timeout
        self.check_every = check_every
        self.forget_dead = forget_dead
        self.clock = clock
        self.snapshot = ClusterSnapshot(taken=clock(), error="not read yet")
        self._nodes: dict[str, NodeRow] = {}
        self._first_seen: dict[str, float] = {}
        self._checks: dict[tuple[str, str], str] = {}
        self._checked: dict[tuple[str, str], float] = {}
        self._task: asyncio.Task[None] | None = None
        self._check_task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._version = 0

    async def start(self) -> None:
        self._http = node_http(total=self.node_timeout)
        await self.read_once()
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        """Idempotent."""
        for task in (self._task, self._check_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._check_task = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            try:
                await self.read_once()
            except Exception:                        # a bad reading must not stop the watching
                log.exception("reading the cluster failed")

    # -- one reading ------------------------------------------------------------------------
    async def read_once(self) -> ClusterSnapshot:
        """Read the registry and the nodes now; the new snapshot."""
        loop = asyncio.get_running_loop()
        now = self.clock()
        error, services, ndb_text = "", [], ""
        try:
            services = await loop.run_in_executor(None, self.registry.index)
        except RegistryError as exc:
            error = f"registry: {exc}"
        if not error:
            try:
                ndb_text = (await loop.run_in_executor(None, self.registry.ndb)).get("text", "")
            except ServiceNotFound:
                ndb_text = ""
            except RegistryError as exc:
                error = f"registry ndb: {exc}"
        nodes = await self._read_nodes(services, now) if not error else self._all_unknown(now)
        for s in services:
            self._first_seen.setdefault(s.name, now)
        names = {s.name for s in services}
        for gone in [n for n in self._first_seen if n not in names]:
            del self._first_seen[gone]
        disks = disks_from(ndb_text, services, self._checks)
        self._schedule_checks(disks, now)
        snap = ClusterSnapshot(taken=now, registry=str(getattr(self.registry, "url", "") or ""), error=error,
                               nodes=nodes, disks=disks,
                               services=tuple(ServiceRow(s.name, s.line(), self._first_seen[s.name])
                                              for s in sorted(services, key=lambda s: s.name)))
        if replace(snap, taken=0.0, version=0) != replace(self.snapshot, taken=0.0, version=0):
            self._version += 1
        self.snapshot = replace(snap, version=self._version)
        return self.snapshot

    def _all_unknown(self, now: float) -> tuple[NodeRow, ...]:
        """The registry did not answer: the nodes as last seen (their state unknown)."""
        return tuple(sorted(self._nodes.values(), key=lambda n: n.name))

    async def _read_nodes(self, services: list[Service], now: float) -> tuple[NodeRow, ...]:
        cpus = [node_from_service(s) for s in services if s.get("svc") == "rstyx"]
        chunks: dict[str, list[str]] = {}
        for s in services:
            if s.get("resource") == "kfs" and s.get("name") and s.get("id"):
                chunks.setdefault(str(s.get("name")), []).append(str(s.get("id")))
        reports = await asyncio.gather(*(self._report(n) for n in cpus))
        current: dict[str, NodeRow] = {}
        for node, (load, sessions) in zip(cpus, reports):
            node = replace(node, chunks=tuple(sorted(chunks.get(node.name, ()))))
            before = self._nodes.get(node.name)
            if load is None:
                since = before.since if before is not None and before.state != NodeState.LIVE and before.since else now
                node = replace(node, state=NodeState.UNREACHABLE.value, since=since)
            else:
                node = with_report(node, load, sessions)
            current[node.name] = node
        for name, before in self._nodes.items():
            if name in current:
                continue
            if before.state == NodeState.DEAD:
                if now - (before.since or now) < self.forget_dead:
                    current[name] = before
            else:
                current[name] = replace(before, state=NodeState.DEAD.value, since=now if before.state == NodeState.LIVE else before.since)
        self._nodes = current
        return tuple(sorted(current.values(), key=lambda n: n.name))

    async def _get(self, base: str, path: str, body: bytes = b"", timeout: float | None = None) -> Any:
        """A signed request's JSON answer; None if the node does not answer well."""
        assert self._http is not None
        method = "POST" if body else "GET"
        headers = {"Content-Type": "application/json"} if body else None
        extra = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout else {}
        try:
            async with await self.signer.send(self._http, method, base, path, body, headers=headers,
                                              **extra) as resp:
                if resp.status != 200:
                    return None
                return json.loads(await resp.read())
        except (*UNREACHABLE, ValueError) as exc:
            log.debug("%s%s: %s", base, path, exc or type(exc).__name__)
            return None

    async def _report(self, node: NodeRow) -> tuple[Any, Any]:
        if not node.url:
            return None, None
        load, sessions = await asyncio.gather(self._get(node.url, "/v1/cpu/load"), self._get(node.url, "/v1/sessions"))
        return load, sessions

    # -- checksum checks ------------------------------------------------------------------
    def _schedule_checks(self, disks: tuple[DiskRow, ...], now: float) -> None:
        if self.check_every <= 0 or (self._check_task is not None and not self._check_task.done()):
            return
        due = [(c.host, c.chunk) for d in disks for c in d.copies
               if c.live and now - self._checked.get((c.host, c.chunk), -1e18) >= self.check_every]
        if due:
            self._check_task = asyncio.create_task(self._check(due))

    async def _check(self, due: list[tuple[str, str]]) -> None:
        for host, chunk in due:                    # one at a time: a check reads the whole copy
            node = self._nodes.get(host)
            self._checked[(host, chunk)] = self.clock()
            if node is None or not node.url:
                continue
            body = json.dumps({"op": "check", "args": {}}).encode()
            answer = await self._get(node.url, f"/v1/chunks/{chunk}/op", body, timeout=DEFAULT_CHECK_TIMEOUT)
            self._checks[(host, chunk)] = check_text(answer.get("result") if isinstance(answer, dict) else None)


__all__ = ["ClusterSnapshot", "ClusterWatch", "CopyRow", "DiskRow", "NodeRow", "ServiceRow"]
