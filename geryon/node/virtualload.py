"""A node's virtual load: dsh's "additional, virtual load for a small time", held by the node.

Every dispatch a node accepts adds `DEFAULT_DISPATCH_LOAD` (one runnable process, in load
average units) that decays linearly to nothing over `DEFAULT_VIRTUAL_SECONDS`; the virtual
load is the sum over the dispatches still decaying. `generation` counts the dispatches ever
accepted: a client that chose a node from what it read claims it with `claim(expect=that
generation)`, which fails when another dispatch was accepted in between (compare and claim),
so two clients choosing at the same instant cannot both take the node for idle. Pure: time
is a parameter. Not here: the node's routes (`geryon.node.cpuservice`), choosing a node
(`geryon.cluster.pick`, `geryon.cluster.dsh`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

log = logging.getLogger(__name__)

DEFAULT_DISPATCH_LOAD = 1.0
"""Virtual load one accepted dispatch adds (one runnable process)."""

DEFAULT_VIRTUAL_SECONDS = 5.0
"""Seconds over which a dispatch's virtual load decays linearly to nothing."""

DEFAULT_MAX_DISPATCHES = 10_000
"""Most decaying dispatches remembered (the newest are kept: a flood cannot grow memory)."""


@dataclass(frozen=True)
class VirtualLoad:
    """The dispatches a node accepted lately, and how many it accepted ever.

    Args:
        per_dispatch: load one dispatch adds.
        seconds: how long it takes that load to decay to nothing (0: no virtual load).
        stamps: when each still-decaying dispatch was accepted, oldest first.
        generation: dispatches accepted ever (what `claim` compares).
    """

    per_dispatch: float = DEFAULT_DISPATCH_LOAD
    seconds: float = DEFAULT_VIRTUAL_SECONDS
    stamps: tuple[float, ...] = ()
    generation: int = 0

    def value(self, now: float) -> float:
        """The virtual load at `now`: each dispatch's share, `per_dispatch * (1 - age / seconds)`."""
        if self.seconds <= 0:
            return 0.0
        return sum(self.per_dispatch * (1.0 - (now - t) / self.seconds)
                   for t in self.stamps if now - t < self.seconds)

    def counted(self, now: float) -> VirtualLoad:
        """With one more dispatch accepted at `now` (and those fully decayed forgotten)."""
        live = tuple(t for t in self.stamps if now - t < self.seconds)
        return replace(self, stamps=(live + (now,))[-DEFAULT_MAX_DISPATCHES:],
                       generation=self.generation + 1)

    def claim(self, expect: int, now: float) -> tuple[VirtualLoad, bool]:
        """Count a dispatch at `now` if no other was accepted since generation `expect` was read.

        Returns:
            (the new state, True) when claimed; (this state, False) when another client's
            dispatch came first (read the new state and choose again).
        """
        if expect != self.generation:
            return self, False
        return self.counted(now), True
