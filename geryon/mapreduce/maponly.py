"""Map-only jobs (`-R 0`, Hadoop's `-numReduceTasks 0`): one part per map task, in input order.

A map-only map task writes its output as it comes, already in the job's output format (the
lines a streaming mapper printed, unchanged; a Python mapper's pairs as `format_lines` writes
them), to its map output file: one segment, never sorted, partitioned or combined. The
driver then runs, for map task i, a commit task i that copies that segment's bytes to part i
(so that parts are staged and committed, locally and on nodes, exactly as reduce parts are).
Not here: scheduling (`geryon.mapreduce.engine`), reading input (`maptask`).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO

from geryon.errors import GeryonError
from geryon.mapreduce.codec import encode_records
from geryon.mapreduce.segments import Segment

log = logging.getLogger(__name__)

WRITE_BATCH = 8192
"""Pairs formatted and written at a time."""


class MapOnlyWriter:
    """Writes one map task's output, in order, to `f` (open for writing in binary).

    Args:
        fmt: the job's output format ("text" or "json", or `codec.PAIRS` for the next step of a
            multi-step job) for a Python mapper's pairs.
    """

    def __init__(self, f: BinaryIO, fmt: str) -> None:
        self._f = f
        self._fmt = fmt
        self._keys: list = []
        self._values: list = []
        self.pairs_in = 0
        self.spills = 0   # never: nothing is held beyond a batch

    def add(self, out: Any) -> None:
        """Add what one Python map call returned: a mapping, an iterable of pairs, or None."""
        if out is None:
            return
        if isinstance(out, Mapping):
            out = out.items()
        keys, values = self._keys, self._values
        for pair in out:
            try:
                k, v = pair
            except (TypeError, ValueError):
                raise GeryonError(f"map must yield (key, value) pairs, got {pair!r}") from None
            keys.append(k)
            values.append(v)
            if len(keys) >= WRITE_BATCH:
                self._flush()

    def add_lines(self, lines: Iterable[bytes]) -> None:
        """Add a streaming mapper's output lines (newline removed), written unchanged."""
        batch = [line + b"\n" for line in lines]
        self._f.write(b"".join(batch))
        self.pairs_in += len(batch)

    def _flush(self) -> None:
        if self._keys:
            self._f.write(encode_records(self._keys, self._values, self._fmt))
            self.pairs_in += len(self._keys)
            self._keys, self._values = [], []

    def finish(self) -> list[Segment]:
        """Write what is left; the output as the single segment of the map output file."""
        self._flush()
        self._f.flush()
        return [Segment(0, self._f.tell(), self.pairs_in, "", ordered=False)]


def copy_segment(inputs: Iterable[tuple[str, Segment]], fetch: Any) -> Iterator[bytes]:
    """The bytes of a map-only task's output (its commit task's one input), for part i."""
    for location, seg in inputs:
        if seg.length:
            yield from fetch(location, seg)
