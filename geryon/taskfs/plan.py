"""Node trees' counts and planning (pure; no sockets): what a tree has, and where N instances go.

- **Counts.** Every node knows its own `os arch` and cores; a `Count` adds nodes, cores
  and free instance slots per `(os, arch)`. A node's aggregated counts are its own plus
  its immediate children's aggregated counts, so the root's sum covers the whole tree
  (`geryon status` prints `OS arch nodes`, the seed's `Linux x86_64 4` format).
- **Planning** (pure; no sockets): the candidates are this node's own cores (first, when
  they match) and each immediate child's subtree, with the free matching slots its last
  counts reported. `spread` is the taskfs rule — N/k instances to each of
  k candidates, the remainder to the first, one each when there are more candidates than
  N — made capacity-aware (a candidate never gets more than it has free; what it cannot
  take goes to the next ones in order); `least_loaded` places instances one by one on the
  candidate with the lowest dsh score (`geryon.cluster.pick.LeastLoaded`), each placed instance
  adding one unit of load. A plan that cannot be met in full raises `NoResources`.

Not here: the tree's links and children (`geryon.taskfs.tree`), sessions (`geryon.taskfs.core`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from geryon.errors import GeryonError
from geryon.cluster.pick import CpuInfo, LeastLoaded, Weight
from geryon.taskfs.wire import NoResources

PICKS = ("spread", "load")
"""How instances are placed: the taskfs spread rule, or least loaded first (dsh's score)."""

WILDCARDS = (None, "", "*")
"""An `os` or `arch` of these matches anything."""

_ARCH_ALIASES = ({"386", "x86_64", "amd64", "i386", "i686"}, {"arm64", "aarch64"})


def matches(have: str, want: str | None, *, arch: bool = False) -> bool:
    """Whether a node's `os` (or `arch`) `have` satisfies the request `want`.

    `*`, "" and None match anything; case is ignored; for architectures Inferno's `386`
    and Linux's `x86_64`/`amd64` are the same, as are `arm64` and `aarch64`.
    """
    if want in WILDCARDS:
        return True
    a, b = have.lower(), str(want).lower()
    if a == b:
        return True
    return arch and any(a in group and b in group for group in _ARCH_ALIASES)


@dataclass(frozen=True)
class Count:
    """Nodes, cores and free instance slots of one `(os, arch)`."""

    os: str
    arch: str
    nodes: int = 0
    cpus: int = 0
    free: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {"os": self.os, "arch": self.arch, "nodes": self.nodes, "cpus": self.cpus, "free": self.free}

    @classmethod
    def from_wire(cls, doc: Any) -> Count:
        """From `to_wire`'s dict; raises ValueError on anything else."""
        if not isinstance(doc, Mapping):
            raise ValueError("a count must be an object")
        try:
            return cls(str(doc["os"]), str(doc["arch"]), int(doc.get("nodes", 0)),
                       int(doc.get("cpus", 0)), int(doc.get("free", 0)))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad count: {exc}") from exc


def add_counts(*groups: Iterable[Count]) -> list[Count]:
    """Sum counts per `(os, arch)`, sorted by os then arch."""
    total: dict[tuple[str, str], Count] = {}
    for group in groups:
        for c in group:
            have = total.get((c.os, c.arch))
            total[(c.os, c.arch)] = c if have is None else replace(
                have, nodes=have.nodes + c.nodes, cpus=have.cpus + c.cpus, free=have.free + c.free)
    return [total[k] for k in sorted(total)]


def free_matching(counts: Iterable[Count], os: str | None, arch: str | None) -> int:
    """Free slots among `counts` whose os and arch match the request."""
    return sum(c.free for c in counts if matches(c.os, os) and matches(c.arch, arch, arch=True))


def format_counts(counts: Iterable[Count]) -> str:
    """The seed's aggregated status: one `OS arch nodes` line per kind of node."""
    return "".join(f"{c.os} {c.arch} {c.nodes}\n" for c in counts)


# -- planning -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """Somewhere instances can go: this node's own cores, a child's subtree, a registry cpu."""

    name: str
    free: int                   # slots matching the request
    load: float = 0.0           # its load average (dsh's score)
    ncpu: int = 1
    mem_free: int = 0
    mem_total: int = 0


def _short(n: int, candidates: Sequence[Candidate]) -> NoResources:
    have = sum(max(c.free, 0) for c in candidates)
    return NoResources(f"no resources matching request: {n} instance{'s' if n != 1 else ''} wanted, "
                       f"{have} free")


def spread(n: int, candidates: Sequence[Candidate]) -> list[int]:
    """How many of `n` instances each candidate gets, by the taskfs rule.

    Only candidates with free slots count (k of them). Each gets n // k, the first also
    the remainder; with more candidates than n, the first n get one each. A candidate
    never gets more than it has free: the excess goes to the others in order.

    Raises:
        NoResources: fewer than `n` free slots in all.
    """
    alloc = [0] * len(candidates)
    usable = [i for i, c in enumerate(candidates) if c.free > 0]
    if n <= 0:
        return alloc
    if sum(candidates[i].free for i in usable) < n:
        raise _short(n, candidates)
    k = len(usable)
    if k > n:
        for i in usable[:n]:
            alloc[i] = 1
        return alloc
    base, rest = divmod(n, k)
    for pos, i in enumerate(usable):
        alloc[i] = min(base + (rest if pos == 0 else 0), candidates[i].free)
    left = n - sum(alloc)
    for i in usable:
        extra = min(left, candidates[i].free - alloc[i])
        alloc[i] += extra
        left -= extra
    return alloc


def least_loaded(n: int, candidates: Sequence[Candidate],
                 weights: Mapping[str, Weight] | None = None) -> list[int]:
    """How many of `n` instances each candidate gets, least loaded first (dsh's score).

    Each instance goes to the candidate with free slots and the lowest score; placing it
    adds 1 to that candidate's load, so a busy or small node fills more slowly.

    Raises:
        NoResources: fewer than `n` free slots in all.
    """
    alloc = [0] * len(candidates)
    if n <= 0:
        return alloc
    if sum(max(c.free, 0) for c in candidates) < n:
        raise _short(n, candidates)
    scorer = LeastLoaded(weights, penalty=0.0)
    for _ in range(n):
        best = min((i for i, c in enumerate(candidates) if alloc[i] < c.free),
                   key=lambda i: (scorer.score(_as_cpu(candidates[i], alloc[i]), 0.0), i))
        alloc[best] += 1
    return alloc


def _as_cpu(c: Candidate, placed: int) -> CpuInfo:
    return CpuInfo(name=c.name, host=c.name, url="", ncpu=max(c.ncpu, 1), load=c.load + placed,
                   mem_free=c.mem_free, mem_total=c.mem_total)


def plan(n: int, candidates: Sequence[Candidate], pick: str = "spread") -> list[int]:
    """`spread` or `least_loaded`, by name (see `PICKS`)."""
    if pick == "spread":
        return spread(n, candidates)
    if pick == "load":
        return least_loaded(n, candidates)
    raise GeryonError(f"unknown pick {pick!r} (choose from {', '.join(PICKS)})")
