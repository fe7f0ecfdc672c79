"""Choosing a cpu: one small protocol, `Pick`, and its implementations.

`RoundRobin` is the seed's `nextcpu`; `LeastLoaded` is dsh's dispatch (load average per
core, scaled by a per-node weight from ndb, plus a decaying virtual load on a node just
picked); `LocalityFirst` prefers cpus on a host holding the task's disks and defers to
another picker otherwise. All are pure: the candidates and the time are parameters, so
no test sleeps. Not here: finding the candidates (`geryon.cluster.rcpu.CpuPool`) or running
anything.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from geryon.errors import GeryonError

log = logging.getLogger(__name__)

DEFAULT_PICK_PENALTY = 1.0
"""Virtual load (per core) a node carries just after it was picked."""

DEFAULT_PENALTY_SECONDS = 5.0
"""Seconds over which that virtual load decays to nothing."""


class NoCpu(GeryonError):
    """There is no cpu to pick from."""


@dataclass(frozen=True)
class CpuInfo:
    """A cpu service as the registry describes it (`svc rstyx`)."""

    name: str                 # the service name, tcp!addr!port
    host: str                 # the node's name
    url: str                  # http://addr:port of the node daemon
    os: str = ""
    arch: str = ""
    ncpu: int = 1
    load: float = 0.0         # the load average, plus the node's virtual load
    mem_free: int = 0
    mem_total: int = 0
    virtual: float = 0.0      # of which virtual: dispatches the node accepted lately
    generation: int = -1      # the node's count of dispatches, when read from it (-1: unknown)

    @classmethod
    def from_service(cls, service: Any) -> CpuInfo:
        """From a registry `Service` with the cpu service's attributes."""
        def num(attr: str, conv: Callable[[str], Any], default: Any) -> Any:
            try:
                return conv(service.get(attr) or "")
            except ValueError:
                return default
        return cls(name=service.name, host=service.get("host") or "", url=service.get("url") or "",
                   os=service.get("os") or "", arch=service.get("arch") or "",
                   ncpu=max(1, num("ncpu", int, 1)), load=num("load", float, 0.0),
                   mem_free=num("memfree", int, 0), mem_total=num("memtotal", int, 0),
                   virtual=num("virtual", float, 0.0))


@dataclass(frozen=True)
class Weight:
    """dsh's per-node weights (`node=HOST load=2.0 mem=1.0`): bigger means busier."""

    load: float = 1.0
    mem: float = 0.0


class Pick(Protocol):
    """Chooses one cpu among live candidates."""

    def pick(self, cpus: Sequence[CpuInfo], now: float, disks: Sequence[str] = ()) -> CpuInfo:
        """The cpu to use; `disks` are the names the task reads. Raises NoCpu."""
        ...


class RoundRobin:
    """The seed's `nextcpu`: the next cpu after the last one picked, in name order.

    Keyed by name rather than position, so cpus joining or dying do not skip others.
    """

    def __init__(self, last: str | None = None) -> None:
        self.last = last

    def pick(self, cpus: Sequence[CpuInfo], now: float, disks: Sequence[str] = ()) -> CpuInfo:
        if not cpus:
            raise NoCpu("no cpus")
        ordered = sorted(cpus, key=lambda c: c.name)
        chosen = next((c for c in ordered if self.last is not None and c.name > self.last), ordered[0])
        self.last = chosen.name
        return chosen


class LeastLoaded:
    """dsh: the cpu with the lowest weighted load per core.

    score = w.load * (load / ncpu + virtual) + w.mem * (1 - memfree / memtotal), where
    `virtual` is `penalty` just after the node was picked, decaying linearly to 0 over
    `penalty_seconds` (so two quick calls of one client go to different nodes). `load`
    already holds the node's own virtual load, which every client sees (`geryon.node.virtualload`);
    dsh, reading it from the nodes, passes `penalty=0`.
    """

    def __init__(self, weights: Mapping[str, Weight] | None = None, *,
                 penalty: float = DEFAULT_PICK_PENALTY,
                 penalty_seconds: float = DEFAULT_PENALTY_SECONDS) -> None:
        self.weights = dict(weights or {})
        self.penalty = penalty
        self.penalty_seconds = penalty_seconds
        self._picked: dict[str, float] = {}       # host -> when last picked

    def weight(self, cpu: CpuInfo) -> Weight:
        return self.weights.get(cpu.host, Weight())

    def virtual(self, cpu: CpuInfo, now: float) -> float:
        """The extra load `cpu` carries because it was picked recently."""
        when = self._picked.get(cpu.host)
        if when is None or self.penalty_seconds <= 0:
            return 0.0
        left = 1.0 - (now - when) / self.penalty_seconds
        return self.penalty * left if left > 0 else 0.0

    def score(self, cpu: CpuInfo, now: float) -> float:
        w = self.weight(cpu)
        used = 1.0 - cpu.mem_free / cpu.mem_total if cpu.mem_total > 0 else 0.0
        return w.load * (cpu.load / max(cpu.ncpu, 1) + self.virtual(cpu, now)) + w.mem * used

    def table(self, cpus: Iterable[CpuInfo], now: float) -> list[tuple[CpuInfo, Weight, float]]:
        """Every cpu with its weight and score, best first (what `geryon loads` prints)."""
        rows = [(c, self.weight(c), self.score(c, now)) for c in cpus]
        return sorted(rows, key=lambda r: (r[2], r[0].host, r[0].name))

    def pick(self, cpus: Sequence[CpuInfo], now: float, disks: Sequence[str] = ()) -> CpuInfo:
        if not cpus:
            raise NoCpu("no cpus")
        chosen = self.table(cpus, now)[0][0]
        self._picked[chosen.host] = now
        return chosen


class LocalityFirst:
    """Prefer cpus on a host holding one of the task's disks; else ask `fallback`.

    Args:
        hosts_of: disk name -> the node names holding it (master and replicas).
        fallback: the picker used among local cpus, and among all when none is local.
    """

    def __init__(self, hosts_of: Callable[[str], Iterable[str]], fallback: Pick | None = None) -> None:
        self.hosts_of = hosts_of
        self.fallback: Pick = fallback or RoundRobin()

    def pick(self, cpus: Sequence[CpuInfo], now: float, disks: Sequence[str] = ()) -> CpuInfo:
        if not cpus:
            raise NoCpu("no cpus")
        hosts = {h for d in disks for h in self.hosts_of(d)}
        local = [c for c in cpus if c.host in hosts]
        return self.fallback.pick(local or cpus, now, disks)


PICKS = ("rr", "load", "local")
"""Names accepted by `make_pick` (and `--pick`)."""


def make_pick(name: str, *, weights: Mapping[str, Weight] | None = None,
              hosts_of: Callable[[str], Iterable[str]] | None = None) -> Pick:
    """The picker called `name`: `rr` round robin, `load` least loaded, `local` locality first."""
    if name == "rr":
        return RoundRobin()
    if name == "load":
        return LeastLoaded(weights)
    if name == "local":
        return LocalityFirst(hosts_of or (lambda disk: ()), RoundRobin())
    raise ValueError(f"unknown pick {name!r} (choose from {', '.join(PICKS)})")


def weights_from_entries(entries: Iterable[Any]) -> dict[str, Weight]:
    """dsh's cluster file from ndb entries `node=HOST load=W mem=W` (bad numbers: 1.0/0.0)."""
    out: dict[str, Weight] = {}
    for entry in entries:
        host = entry.get("node")
        if not host:
            continue

        def num(attr: str, default: float) -> float:
            try:
                return float(entry.get(attr) or default)
            except ValueError:
                log.warning("ndb node=%s: bad %s=%r", host, attr, entry.get(attr))
                return default
        out[host] = Weight(load=num("load", 1.0), mem=num("mem", 0.0))
    return out
