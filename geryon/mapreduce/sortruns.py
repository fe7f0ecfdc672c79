"""The sort buffer's runs (`sortbuffer.SortBuffer`): a sum's run written in hash order, spilled runs
merged into the map output (first in passes, when more were spilled than the budget reads at once),
or concatenated when in hash order. A mixin: the buffer holds the state, this the passes over files.
"""
from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from typing import Any

from geryon.mapreduce import order
from geryon.mapreduce.partition import crc32_partition, split_by_partition
from geryon.mapreduce.segments import (BLOCK_BYTES, BLOCK_VALUES, Segment, SegmentWriter, file_chunks, iter_records,
                                       merge_fan_in, remove_quietly)

log = logging.getLogger(__name__)

_NOTHING = object()
_general = object()


class RunWriting:
    """Writing and merging a `SortBuffer`'s runs (the attributes below are the buffer's)."""

    partitions: int
    merge_passes: int
    _budget: int
    _combine: Callable | None
    _sum: bool
    _store: dict
    _part: Callable[[Any, int], int]
    _runs: list[tuple[str, list[Segment]]]
    _footprint: Any
    _value_each: int

    def _new_run_path(self) -> str:
        raise NotImplementedError

    def _emit(self, w: SegmentWriter, key: Any, vals: list) -> None:
        raise NotImplementedError

    def _write_hash_run(self, f: Any) -> list[Segment]:
        """Sums in hash order: partition keys and values in one pass (measured 2x faster
        than partitioning keys and then looking their values up)."""
        store = self._store
        n = self.partitions
        kb: list[list] = [[] for _ in range(n)]
        vb: list[list] = [[] for _ in range(n)]
        if n == 1:
            kb[0], vb[0] = list(store), list(store.values())
        elif store:
            kadd = [b.append for b in kb]
            vadd = [b.append for b in vb]
            part = self._part
            if part is crc32_partition:
                crc = zlib.crc32
                try:
                    if type(next(iter(store))) is bytes:
                        for k, v in store.items():  # crc32_partition of bytes keys, inlined
                            r = crc(k) % n
                            kadd[r](k)
                            vadd[r](v)
                    else:
                        for k, v in store.items():  # ... and of str keys
                            r = crc(k.encode()) % n
                            kadd[r](k)
                            vadd[r](v)
                except (AttributeError, TypeError, UnicodeEncodeError):
                    part = _general  # keys of other types: start again, generally
                    kb, vb = [[] for _ in range(n)], [[] for _ in range(n)]
            if part is not crc32_partition:
                buckets = split_by_partition(list(store), n, self._part)
                kb = buckets
                vb = [list(map(store.__getitem__, b)) for b in buckets]
        kind = order.key_kind(store.keys())
        segments = []
        for keys, values in zip(kb, vb):
            w = SegmentWriter(f)
            w.add_singles(keys, values)
            segments.append(w.finish(order.key_kind(keys) if kind == "mixed" else kind, False))
        return segments

    def _narrow_runs(self) -> None:
        """Merge the first runs into one until no more than the fan-in allowed remain, so that
        the final merge's open runs stay within the budget (order kept: the merged run is first)."""
        fan = merge_fan_in(self._budget)  # runs open at once: budget / MERGE_STREAM_BYTES
        while len(self._runs) > fan:
            batch = self._runs[:fan]
            path = self._new_run_path()
            try:
                with open(path, "wb") as f:
                    segs = self._merge_runs(f, batch)
            except BaseException:
                remove_quietly(path)
                raise
            remove_quietly(*(p for p, _ in batch))
            self._runs = [(path, segs)] + self._runs[fan:]
            self.merge_passes += 1
            log.debug("merged %d runs into one: %d left", fan, len(self._runs))

    def _merge_runs(self, f: Any, runs: list[tuple[str, list[Segment]]]) -> list[Segment]:
        segments = []
        combine = self._combine
        # A hot key's values are written out as they come, a block's worth at a time (by count,
        # and by bytes: 65,536 values of 5 KB held here would be 320 MB beyond the budget).
        each = self._footprint.value_bytes if self._sum else self._value_each
        hot = max(1, min(BLOCK_VALUES, BLOCK_BYTES // max(1, each)))
        for r in range(self.partitions):
            parts = [(p, segs[r]) for p, segs in runs if segs[r].records]
            kinds = {s.kind for _, s in parts}
            w = SegmentWriter(f)
            streams = [iter_records(file_chunks(p, s.offset, s.length)) for p, s in parts]
            cur_key: Any = _NOTHING
            cur_vals: list = []
            for k, vals in order.merge(streams, mixed=len(kinds) > 1 or "mixed" in kinds):
                if cur_key is not _NOTHING and k == cur_key:
                    cur_vals.extend(vals)
                    if not self._sum and combine is None and len(cur_vals) >= hot:
                        w.add_list(cur_key, cur_vals)  # bounded memory for a hot key
                        cur_vals = []
                    continue
                if cur_key is not _NOTHING:
                    self._emit(w, cur_key, cur_vals)
                cur_key, cur_vals = k, list(vals)
            if cur_key is not _NOTHING:
                self._emit(w, cur_key, cur_vals)
            kind = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "")
            segments.append(w.finish(kind))
        return segments

    def _concatenate_runs(self, f: Any) -> list[Segment]:
        """Hash-order runs need no merge: segment r is every run's segment r, end to end."""
        segments = []
        for r in range(self.partitions):
            start = f.tell()
            records = 0
            kinds = set()
            for path, segs in self._runs:
                seg = segs[r]
                for chunk in file_chunks(path, seg.offset, seg.length):
                    f.write(chunk)
                records += seg.records
                if seg.records:
                    kinds.add(seg.kind)
            kind = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "")
            segments.append(Segment(start, f.tell() - start, records, kind, False))
        return segments
