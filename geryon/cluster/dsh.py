"""dsh: run a command on the least-loaded node of the cluster, read from the nodes themselves.

Every node reports its load at once (`GET /v1/cpu/load`: its load average plus the virtual
load of the dispatches it accepted lately, `geryon.node.virtualload`, which every client sees);
dsh scores them per core, scaled by the per-node weights from ndb (`node=HOST load=2.0
mem=1.0`; `geryon.cluster.pick.LeastLoaded`), then claims the best (`POST /v1/cpu/claim` with the
generation it read). A claim lost to another client brings the node's new load, and dsh
chooses again: concurrent dsh processes spread instead of piling onto the node they all saw
idle. The run itself is rcpu's (`geryon.cluster.rcpu.Rcpu`), carrying the claim so the node
does not count it twice. Not here: reading ndb files or options (the CLI).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from geryon.errors import GeryonError
from geryon.cluster.pick import CpuInfo, LeastLoaded, NoCpu, Weight
from geryon.cluster.rcpu import CpuPool, Rcpu, RunResult
from geryon.disks.remote import NodeUnavailable
from geryon.net.aio import UNREACHABLE, node_http
from registry.signer import Signer

log = logging.getLogger(__name__)

DEFAULT_LOAD_TIMEOUT = 5.0
"""Seconds a node may take to report its load or answer a claim before it is passed over."""

DEFAULT_CLAIM_TRIES = 32
"""Claims lost in a row before dsh runs on its best choice unclaimed (the node still counts it)."""

LOAD_PATH = "/v1/cpu/load"
CLAIM_PATH = "/v1/cpu/claim"

Claim = Callable[[CpuInfo], Awaitable["tuple[bool, CpuInfo, str | None] | None"]]
"""Claims a cpu at the generation it was read: (won, its load now, token), None if unreachable."""


@dataclass(frozen=True)
class LoadRow:
    """One line of `geryon loads`."""

    cpu: CpuInfo
    weight: Weight
    score: float

    def cells(self) -> list[str]:
        c = self.cpu
        return [c.host, f"{c.os}/{c.arch}", str(c.ncpu), f"{max(c.load - c.virtual, 0.0):.2f}",
                f"{c.virtual:.2f}", f"{c.mem_free >> 20}M",
                f"load={self.weight.load:g},mem={self.weight.mem:g}", f"{self.score:.3f}"]


LOAD_HEADER = ["host", "os/arch", "ncpu", "load", "virtual", "memfree", "weight", "score"]
"""Column names of `geryon loads` (`load` is the load average, `virtual` the node's virtual load)."""


def with_load(cpu: CpuInfo, doc: Any) -> CpuInfo:
    """`cpu` as its node reports itself now (`GET /v1/cpu/load`'s answer).

    Raises:
        ValueError: the answer is not a load report.
    """
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")

    def num(key: str) -> float:
        value = doc.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"bad {key!r}")
        return value

    virtual = max(float(num("virtual")), 0.0)
    return replace(cpu, ncpu=max(1, int(num("ncpu"))), load=max(float(num("load")), 0.0) + virtual,
                   virtual=virtual, mem_free=int(num("mem_free")), mem_total=int(num("mem_total")),
                   generation=int(num("generation")), os=str(doc.get("os") or cpu.os),
                   arch=str(doc.get("arch") or cpu.arch))


async def choose(cpus: Sequence[CpuInfo], pick: LeastLoaded, claim: Claim, now: float,
                 tries: int = DEFAULT_CLAIM_TRIES) -> tuple[CpuInfo, str | None]:
    """The least-loaded cpu, claimed: (cpu, claim token, None when unclaimed).

    Chooses from `cpus` as read, claims the best at the generation read; a lost claim
    replaces that cpu by its new load and the choice is made again. A cpu whose node
    cannot be claimed (generation -1: read from the registry) is returned unclaimed.
    Each lost claim is another client's won one, so the loop ends; after `tries` losses
    the best as now known is returned unclaimed.

    Raises:
        NoCpu: no cpu left (none given, or every one unreachable).
    """
    known = {c.name: c for c in cpus}
    for _ in range(tries):
        if not known:
            break
        best = pick.pick(list(known.values()), now)
        if best.generation < 0:
            return best, None
        outcome = await claim(best)
        if outcome is None:
            del known[best.name]
            continue
        won, fresh, token = outcome
        if won:
            return fresh, token
        log.debug("claim on %s lost (generation %d, now %d): choosing again",
                  best.host, best.generation, fresh.generation)
        known[best.name] = fresh
    if not known:
        raise NoCpu("no cpus")
    return pick.pick(list(known.values()), now), None


class Dsh:
    """Least-loaded dispatch over one cluster; a context manager.

    Args:
        registry: the cluster's registry (finds the cpus; their loads come from the nodes).
        secret: the cluster secret.
        weights: per-node weights (node name -> Weight).
        clock: seconds, passed to the picker and to rcpu.
        disk_state: per-host last output disk (rcpu's round robin state, kept by the caller).
        timeout: seconds a node may take to answer a load or claim request.
    """

    def __init__(self, registry: Any, secret: bytes | None = None, *,
                 weights: Mapping[str, Weight] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 disk_state: dict[str, str] | None = None,
                 timeout: float = DEFAULT_LOAD_TIMEOUT) -> None:
        # No client-side virtual load: the node's, in what it reports, counts every client's.
        self.pick = LeastLoaded(weights, penalty=0.0)
        self.pool = CpuPool(registry, follow=False)     # the live cpus, read on every call
        self.clock = clock
        self.timeout = timeout
        self.signer = Signer(secret)
        self._rcpu = Rcpu(registry, secret, pool=self.pool, clock=clock, disk_state=disk_state)

    # -- talking to nodes -----------------------------------------------------------------
    async def _ask(self, http: aiohttp.ClientSession, cpu: CpuInfo, method: str, path: str,
                   body: bytes = b"") -> tuple[int, Any] | None:
        """(status, JSON answer) of one signed request; None if the node is unreachable."""
        headers = {"Content-Type": "application/json"} if body else None
        try:
            async with await self.signer.send(http, method, cpu.url, path, body, headers=headers) as resp:
                status, raw = resp.status, await resp.read()
        except UNREACHABLE as exc:
            log.info("cpu %s: %s %s: %s", cpu.name, method, path, exc or type(exc).__name__)
            return None
        if status == 401:
            raise GeryonError(f"cpu {cpu.name}: authentication failed (check the cluster secret)")
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None

    async def _load(self, http: aiohttp.ClientSession, cpu: CpuInfo) -> CpuInfo | None:
        answer = await self._ask(http, cpu, "GET", LOAD_PATH)
        if answer is not None and answer[0] == 404:
            return cpu                              # a node without the route: the registry's view
        try:
            return with_load(cpu, answer[1]) if answer is not None and answer[0] == 200 else None
        except ValueError as exc:
            log.info("cpu %s: bad load report: %s", cpu.name, exc)
            return None

    async def _claim(self, http: aiohttp.ClientSession, cpu: CpuInfo) -> tuple[bool, CpuInfo, str | None] | None:
        answer = await self._ask(http, cpu, "POST", CLAIM_PATH, json.dumps({"expect": cpu.generation}).encode())
        if answer is None or answer[0] not in (200, 409) or not isinstance(answer[1], dict):
            return None
        try:
            fresh = with_load(cpu, answer[1])
        except ValueError:
            return None
        token = answer[1].get("claim")
        return answer[0] == 200, fresh, token if isinstance(token, str) else None

    def _session(self) -> aiohttp.ClientSession:
        return node_http(total=self.timeout)

    async def _current(self, http: aiohttp.ClientSession, exclude: set[str]) -> list[CpuInfo]:
        cpus = [c for c in self.pool.live() if c.name not in exclude and c.url]
        loads = await asyncio.gather(*(self._load(http, c) for c in cpus))
        return [c for c in loads if c is not None]         # the silent are passed over this time

    # -- the verbs ------------------------------------------------------------------------
    def loads(self) -> list[LoadRow]:
        """Every live cpu, as its node reports it now, with its weight and score, best first."""
        async def go() -> list[CpuInfo]:
            async with self._session() as http:
                return await self._current(http, set())
        return [LoadRow(c, w, s) for c, w, s in self.pick.table(asyncio.run(go()), self.clock())]

    def claim(self, exclude: set[str] | None = None) -> tuple[CpuInfo, str | None]:
        """The least-loaded live cpu, claimed on its node: (cpu, claim token or None).

        Raises:
            GeryonError: no cpu answers.
        """
        async def go() -> tuple[CpuInfo, str | None]:
            async with self._session() as http:
                cpus = await self._current(http, exclude or set())
                return await choose(cpus, self.pick, lambda c: self._claim(http, c), self.clock())
        try:
            return asyncio.run(go())
        except NoCpu:
            raise GeryonError("no live cpu to run on" + (f" (unreachable: {', '.join(sorted(exclude))})"
                                                        if exclude else "")) from None

    def run(self, cmd: str | Sequence[str], disks: Sequence[str] = (), **options: Any) -> RunResult:
        """Run `cmd` on the least-loaded cpu, with `disks` under `$n` (see `Rcpu.run` for options)."""
        tried: set[str] = set()
        while True:
            cpu, token = self.claim(tried)
            try:
                return self._rcpu.run(cmd, disks, cpu=cpu, claim=token, **options)
            except NodeUnavailable as exc:
                log.info("cpu %s unreachable (%s): choosing again", cpu.name, exc)
                tried.add(cpu.name)

    def close(self) -> None:
        """Idempotent."""
        self._rcpu.close()

    def __enter__(self) -> Dsh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
