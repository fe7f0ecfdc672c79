"""dsh: run a command on the least-loaded node of the cluster.

Load is what each cpu service reports (its load average, plus the virtual load a node
adds for a few seconds after starting a command), per core, scaled by dsh's per-node
weights from ndb (`node=HOST load=2.0 mem=1.0`); see `geryon.pick.LeastLoaded`. The run
itself is rcpu's (`geryon.rcpuclient.Rcpu`). Not here: reading ndb files or options (the CLI).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from geryon.pick import CpuInfo, LeastLoaded, Weight
from geryon.rcpuclient import CpuPool, Rcpu, RunResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadRow:
    """One line of `geryon loads`."""

    cpu: CpuInfo
    weight: Weight
    score: float

    def cells(self) -> list[str]:
        c = self.cpu
        return [c.host, f"{c.os}/{c.arch}", str(c.ncpu), f"{c.load:.2f}",
                f"{c.mem_free >> 20}M", f"load={self.weight.load:g},mem={self.weight.mem:g}",
                f"{self.score:.3f}"]


LOAD_HEADER = ["host", "os/arch", "ncpu", "load", "memfree", "weight", "score"]
"""Column names of `geryon loads`."""


class Dsh:
    """Least-loaded dispatch over one cluster; a context manager.

    Args:
        registry: the cluster's registry.
        secret: the cluster secret.
        weights: per-node weights (node name -> Weight).
        clock: seconds, for the picker's virtual load.
    """

    def __init__(self, registry: Any, secret: bytes | None = None, *,
                 weights: Mapping[str, Weight] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pick = LeastLoaded(weights)
        self.pool = CpuPool(registry, follow=False)     # fresh loads on every call
        self.clock = clock
        self._rcpu = Rcpu(registry, secret, pick=self.pick, pool=self.pool, clock=clock)

    def loads(self) -> list[LoadRow]:
        """Every live cpu with its weight and score, best first."""
        return [LoadRow(c, w, s) for c, w, s in self.pick.table(self.pool.live(), self.clock())]

    def run(self, cmd: str | Sequence[str], **options: Any) -> RunResult:
        """Run `cmd` on the least-loaded cpu (see `Rcpu.run` for options)."""
        return self._rcpu.run(cmd, (), **options)

    def close(self) -> None:
        """Idempotent."""
        self._rcpu.close()

    def __enter__(self) -> Dsh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
