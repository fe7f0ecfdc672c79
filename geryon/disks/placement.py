"""Where chunk copies go: choose K chunk directories for a chunk, given their free space.

Pure: candidates in, choice out. Local mode offers one candidate for masters (`--to DIR`)
and one for replicas (`DIR/replicas`); a cluster offers its nodes' free chunks (each takes
one copy: `single`) and chunk pools (room for many), so that copies land on distinct
hosts with the most room. Not here: finding candidates or making chunks (`allocate`, `load`).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from geryon.errors import GeryonError

log = logging.getLogger(__name__)


class NoRoom(GeryonError):
    """No candidate directory has room for a chunk copy."""


@dataclass(frozen=True)
class ChunkSlot:
    """A place a chunk copy can be made: a directory on a host, with free bytes."""

    host: str
    path: str
    free: int
    single: bool = False          # takes one copy at most (an existing empty chunk)


def place(size: int, slots: Sequence[ChunkSlot], copies: int) -> list[ChunkSlot]:
    """Choose a slot for each of `copies` copies of a chunk of `size` bytes.

    Copies go to distinct hosts while there are hosts with room, then to the slots used
    least; among equals, the one with the most free bytes, then the earliest offered.
    A slot may take several copies (its free space is charged for each), but for a
    `single` one.

    Raises:
        NoRoom: fewer slots have room than copies are asked for.
    """
    free = [s.free for s in slots]
    hosts_used: dict[str, int] = {}
    used = [0] * len(slots)
    chosen: list[ChunkSlot] = []
    for copy in range(copies):
        fits = [i for i, s in enumerate(slots) if free[i] >= size and not (s.single and used[i])]
        if not fits:
            raise NoRoom(f"no room for copy {copy + 1} of {copies} of a {size}-byte chunk "
                         f"(candidates: {', '.join(f'{s.host}!{s.path} {f} free' for s, f in zip(slots, free)) or 'none'})")
        best = min(fits, key=lambda i: (hosts_used.get(slots[i].host, 0), used[i], -free[i], i))
        chosen.append(slots[best])
        free[best] -= size
        used[best] += 1
        hosts_used[slots[best].host] = hosts_used.get(slots[best].host, 0) + 1
    return chosen
