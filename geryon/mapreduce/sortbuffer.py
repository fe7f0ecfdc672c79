"""The map side's sort buffer: collect pairs, combine, partition, sort, spill, merge.

Pairs are grouped in a dict as they arrive (key -> list of values, or key -> running sum
when the combiner is a plain sum), so sorting touches each distinct key once. When the
buffer's estimated size passes the sort budget it is spilled as a sorted run file; at the
end the runs are merged into one map output file with R segments (`segments`), first in
passes when more runs than the budget can hold open were spilled. Record
order is deterministic: it depends on the input and the budget, never on timing. The
buffer's size is estimated as the objects and hash table it really holds (`footprint`),
not as payload bytes, so that a task stays within its budget plus `memory.TASK_OVERHEAD`.
Values and new keys are measured as they arrive, `CHECK_PAIRS` pairs at a time (their lengths,
and a sample of their objects), so values or keys that grow late (small ones first, then big
ones) are counted at their own size, not at the size of the first ones; a single value larger
than the budget is refused with one line, since sorting and merging hold it whole several
times over.

Hash aggregation: when both combine and reduce are a plain sum, the reducer aggregates in
a dictionary and sorts each partition once, so sorting here too would only double the
heaviest step (Spark's reduceByKey makes the same choice). Segments are then written in
hash order (`Segment.ordered` is False) and spilled runs are simply concatenated (`sortruns`).
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from itertools import islice, repeat
from operator import add, itemgetter
from typing import Any

from geryon.mapreduce import order
from geryon.mapreduce.codec import freeze
from geryon.errors import GeryonError
from geryon.mapreduce import memory
from geryon.mapreduce.footprint import STR_OBJECT, DictFootprint, measured_bytes, object_bytes
from geryon.mapreduce.partition import split_by_partition
from geryon.mapreduce.segments import (BLOCK_BYTES, BLOCK_VALUES, MERGE_STREAM_BYTES, Segment, SegmentWriter,  # noqa: F401
                                       file_chunks, iter_records, merge_fan_in, remove_quietly)
from geryon.mapreduce.sortruns import RunWriting

log = logging.getLogger(__name__)

SMALL_MAPPING = 32
"""A map call's mapping with fewer keys than this is summed in by a plain loop, a larger one
in one C-level pass (the loop wins below about 30 keys, measured on CPython 3.11)."""

CHECK_PAIRS = 1024
"""Pairs added between two measurements of the values' and new keys' sizes: at most this many
values or keys can arrive bigger than the buffer knows before it looks (a map call's mapping
is measured whole, after it is added)."""

VALUE_SAMPLE = 8
"""Values of each `CHECK_PAIRS` whose objects are measured (evenly spaced, and the last)."""


class ValueTooBig(GeryonError):
    """One value is larger than the sort budget: no buffer within the budget can hold it."""


class CombineError(GeryonError):
    """A combine function returned something the engine cannot use."""


class SortBuffer(RunWriting):
    """Collects a map task's output and writes it as one partitioned, sorted file.

    Args:
        partitions: R.
        part: the partition function (key, R) -> r.
        combine: a combine(key, values) function, or None.
        sum_combine: the combiner is a plain sum: keep running sums instead of lists.
        budget: bytes of memory before spilling a run.
        spill_dir: where run files go (removed when the task finishes).
        combine_lines: a streaming combiner (`streaming.StreamingCombiner`): each time the buffer
            is written, it gets the buffer and its keys by partition, sorted, and returns the
            buffer that replaces it.
    """

    def __init__(self, partitions: int, part: Callable[[Any, int], int], combine: Callable | None,
                 sum_combine: bool, budget: int, spill_dir: str, ordered: bool = True,
                 combine_lines: Callable[[dict, list[list]], dict] | None = None) -> None:
        self.partitions = partitions
        self._combine_lines = combine_lines
        self._ordered = ordered or not sum_combine
        self._part = part
        self._combine = combine
        self._sum = sum_combine
        self._budget = budget
        self._spill_dir = spill_dir
        self._store: dict = {}
        self._nvalues = 0
        self._footprint = DictFootprint()
        self._runs: list[tuple[str, list[Segment]]] = []
        self._run_files = 0  # run files made so far (names are never reused)
        self.merge_passes = 0  # merges of some runs into one before the final merge
        self.pairs_in = 0
        self.spills = 0
        self._check_at = 0  # pairs_in at which to estimate the buffer's size again
        self._value_bytes = 0  # list buffers: bytes of the values held, as measured on arrival
        self._value_each = 0   # the largest mean bytes a value has had in a measured batch
        self._key_bytes = 0    # bytes of the keys held, as measured on arrival ...
        self._keys_measured = 0  # ... which are the store's first this many (dicts keep order)
        self._look_at = 0      # pairs_in at which to measure the new keys again
        self._since_bytes = 0  # value bytes added since the last estimate ...
        self._room_bytes = 0   # ... and how many may come before the next one

    # -- collecting ---------------------------------------------------------------
    def add(self, out: Any) -> None:
        """Add what one map call returned: a mapping, an iterable of pairs, or None."""
        if out is None:
            return
        if type(out) is Counter or type(out) is dict or isinstance(out, Mapping):  # exact types: no ABC check
            if self._sum:
                self._add_counts(out)
                return
            out = out.items()
        self._add_pairs(out)

    def _add_pairs(self, pairs: Iterable) -> None:
        # In batches up to the next size check: one map call may yield more than the budget
        # (a generator over a whole file's record), and is spilled part way, not held whole.
        # At most `CHECK_PAIRS` at a time: list buffers measure each batch's values, and every
        # buffer its new keys (`_look`), so that values or keys that grow late bring the next
        # estimate forward instead of waiting for a count set by small ones.
        it = iter(pairs)
        while True:
            room = min(CHECK_PAIRS, max(1, self._check_at - self.pairs_in))
            if self._sum:
                n = self._add_batch(islice(it, room))
            else:
                batch = list(islice(it, room))
                grown = self._measure(batch)
                n = self._add_batch(batch)
                self._value_bytes += grown
                self._since_bytes += grown
            self.pairs_in += n
            self._nvalues += n
            if n:
                self._look()
            if n < room:
                return

    def _measure(self, batch: list) -> int:
        """The bytes the values of `batch` take: their lengths when all are str or bytes (exact,
        for ASCII), else a sample of their objects scaled up; refuses one larger than the budget."""
        n = len(batch)
        if not n:
            return 0
        try:
            step = max(1, n // VALUE_SAMPLE)
            sample = [p[1] for p in batch[::step]]
            sample.append(batch[-1][1])
        except (TypeError, IndexError, KeyError):
            return 0  # not pairs: _add_batch says so
        sizes = list(map(object_bytes, sample))
        total = sum(sizes) * n // len(sizes)
        try:
            lengths = sum(map(len, map(_second, batch)))
            total = max(total, lengths + n * STR_OBJECT)
            biggest = max(map(len, map(_second, batch))) + STR_OBJECT if lengths > self._budget else 0
        except (TypeError, IndexError, KeyError):
            biggest = max(sizes)  # numbers, lists: the sampled ones
        if biggest > self._budget:
            key = next((p[0] for p in batch if _size(p[1]) == biggest), batch[-1][0])
            raise ValueTooBig(f"a value of {memory.describe(biggest)} (key {key!r:.60}) is larger than --sort-budget "
                              f"{memory.describe(self._budget)}: a value is held whole while it is sorted and "
                              f"merged; raise --sort-budget or emit smaller values")
        self._value_each = max(self._value_each, total // n)
        return total

    def _add_batch(self, pairs: Iterable) -> int:
        store = self._store
        get = store.get
        n = 0
        slow = self._add_one_slow
        if self._sum:
            for pair in pairs:
                try:
                    k, v = pair
                    store[k] = get(k, 0) + v
                except (TypeError, ValueError):
                    slow(pair)  # an unhashable key, a non-number, or not a pair
                n += 1
        else:
            for pair in pairs:
                try:
                    k, v = pair
                    g = get(k)
                    if g is None:
                        store[k] = [v]
                    else:
                        g.append(v)
                except (TypeError, ValueError):
                    slow(pair)
                n += 1
        return n

    def _add_counts(self, counts: Mapping) -> None:
        """The hot path of word count: a mapping's counts added into the running sums."""
        store = self._store
        if not store:
            store.update(counts)
        else:
            try:
                if len(counts) < SMALL_MAPPING:
                    # A line's few words (`--reader lines`): a plain loop costs less than
                    # building the iterators below (measured 0.55 against 1.24 us for 3 keys).
                    get = store.get
                    for k, v in counts.items():
                        store[k] = get(k, 0) + v
                else:
                    # One C-level pass (a mapping's keys are distinct, so each is read before it is
                    # written): measured 1.6x faster than a loop over a file's counts.
                    store.update(zip(counts, map(add, map(store.get, counts, repeat(0)), counts.values())))
            except TypeError:
                get = store.get
                for k, v in counts.items():  # find the culprit
                    try:
                        get(k, 0) + v
                    except TypeError:
                        raise GeryonError(f"combine sums values, but {v!r} (key {k!r}) is not a number") from None
                raise
        n = len(counts)
        self.pairs_in += n
        self._nvalues += n
        if self.pairs_in >= self._look_at:
            self._look()

    def _add_one_slow(self, pair: Any) -> None:
        """Add one pair that the fast path refused, or explain why it cannot be added."""
        store = self._store
        try:
            k, v = pair
        except (TypeError, ValueError):
            raise GeryonError(f"map must yield (key, value) pairs, got {pair!r}") from None
        k = freeze(k)
        try:
            hash(k)
        except TypeError:
            raise GeryonError(f"key {k!r} cannot be used: keys must be str, bytes, numbers or lists of them") from None
        if self._sum:
            try:
                store[k] = store.get(k, 0) + v
            except TypeError:
                raise GeryonError(f"combine sums values, but {v!r} is not a number") from None
        else:
            store.setdefault(k, []).append(v)

    def _measure_keys(self) -> None:
        """Count the keys added since the last look: the store's last ones, since a dict keeps
        insertion order and keys leave it only all at once (a spill)."""
        store = self._store
        new = len(store) - self._keys_measured
        if new > 0:
            grown = measured_bytes(list(islice(reversed(store), new)), VALUE_SAMPLE)
            self._key_bytes += grown
            self._since_bytes += grown
            self._keys_measured = len(store)

    def _look(self) -> None:
        """After a batch: measure its new keys; estimate the buffer (and spill it if it is over the
        budget) when the count set by the last estimate is reached, or when the bytes measured since
        have used a quarter of the room it left."""
        self._measure_keys()
        if self.pairs_in >= self._check_at or self._since_bytes >= self._room_bytes:
            self._check_at = self.pairs_in
            self._check()
        self._look_at = min(self._check_at, self.pairs_in + CHECK_PAIRS)

    def _estimate(self) -> int:
        if self._sum:
            return self._footprint.estimate(self._store, self._nvalues, key_total=self._key_bytes)
        return self._footprint.estimate(self._store, self._nvalues, lists=True, value_total=self._value_bytes,
                                        key_total=self._key_bytes)

    def _check(self) -> None:
        if self.pairs_in < self._check_at:
            return
        est = self._estimate()
        if est > self._budget:
            self.spill()
            est = 0
        # The next look after enough pairs to use a quarter of the room left, at twice the
        # bytes a pair has cost so far: rare when far from the budget, every pair near it.
        each = self._footprint.value_bytes if self._sum else self._value_each
        key_each = max(self._footprint.key_bytes, self._key_bytes // max(1, len(self._store)))
        per_pair = 2 * (key_each + each + 208)  # 208: list, table share
        self._check_at = self.pairs_in + max(1, (self._budget - est) // (4 * per_pair))
        self._room_bytes = max(1, (self._budget - est) // 4)
        self._since_bytes = 0

    # -- writing ------------------------------------------------------------------
    def _write_run(self, f: Any) -> list[Segment]:
        if not self._ordered:
            return self._write_hash_run(f)
        store = self._store
        segments = []
        combine = self._combine
        buckets = split_by_partition(list(store), self.partitions, self._part)
        if self._ordered:
            for keys in buckets:
                order.sort_keys(keys)
        if self._combine_lines is not None and store:
            store, buckets = self._combined_lines(buckets)
        kind = order.key_kind(store.keys())  # one kind for all: per bucket only if mixed
        for keys in buckets:
            w = SegmentWriter(f)
            if self._sum:
                w.add_singles(keys, list(map(store.__getitem__, keys)))
            elif combine is None:
                vals = list(map(store.__getitem__, keys))
                if vals and max(map(len, vals)) == 1:   # distinct keys (a sort): flat blocks, in bulk
                    w.add_singles(keys, list(map(_first, vals)))
                else:
                    w.add_lists(keys, vals)   # in bulk too (add_list per key was most of the write)
            else:
                for k in keys:
                    vals = store[k]
                    if len(vals) > 1:
                        vals = _combined(combine, k, vals)
                    w.add_list(k, vals)
            segments.append(w.finish(order.key_kind(keys) if kind == "mixed" else kind, self._ordered))
        return segments

    def _combined_lines(self, buckets: list[list]) -> tuple[dict, list[list]]:
        """The buffer after the streaming combiner, and its keys by partition, sorted (a key the
        combiner made up is partitioned as any other; the others keep theirs)."""
        assert self._combine_lines is not None
        part_of = {k: r for r, keys in enumerate(buckets) for k in keys}
        store = self._store = self._combine_lines(self._store, buckets)
        new = [k for k in store if k not in part_of]
        if new:
            for r, keys in enumerate(split_by_partition(new, self.partitions, self._part)):
                part_of.update(dict.fromkeys(keys, r))
        buckets = [[] for _ in range(self.partitions)]
        for k in store:
            buckets[part_of[k]].append(k)
        for keys in buckets:
            order.sort_keys(keys)
        return store, buckets

    def spill(self) -> None:
        """Write the buffer as a sorted run file and empty it."""
        if not self._store:
            return
        path = self._new_run_path()
        with open(path, "wb") as f:
            segs = self._write_run(f)
        self._runs.append((path, segs))
        self.spills += 1
        log.debug("spilled run %d: %d keys", len(self._runs), len(self._store))
        self._store = {}
        self._nvalues = 0
        self._value_bytes = 0
        self._key_bytes = 0
        self._keys_measured = 0
        self._footprint.reset()  # the next fill is sampled afresh (its keys and values may differ)

    def finish(self, out_path: str) -> list[Segment]:
        """Write everything collected to `out_path` (one file, R segments); return the index."""
        try:
            with open(out_path, "wb") as f:
                if not self._runs:
                    segments = self._write_run(f)
                else:
                    self.spill()
                    if self._ordered:
                        self._narrow_runs()
                        segments = self._merge_runs(f, self._runs)
                    else:
                        segments = self._concatenate_runs(f)
        finally:
            remove_quietly(*(p for p, _ in self._runs))
            self._runs = []
            self._store = {}
        return segments

    def _new_run_path(self) -> str:
        self._run_files += 1
        return os.path.join(self._spill_dir, f"run{self._run_files - 1}")

    def _emit(self, w: SegmentWriter, key: Any, vals: list) -> None:
        if self._sum:
            w.add_singles([key], [sum(vals)])
        elif self._combine is not None and len(vals) > 1:
            w.add_list(key, _combined(self._combine, key, vals))
        elif vals:
            w.add_list(key, vals)


_first = itemgetter(0)
_second = itemgetter(1)


def _size(value: Any) -> int:
    try:
        return len(value) + STR_OBJECT
    except TypeError:
        return object_bytes(value)


def _combined(combine: Callable, key: Any, values: list) -> list:
    """Run combine(key, values): a returned value, or pairs yielded for the same key."""
    out = combine(key, iter(values))
    if out is None:
        return []
    if hasattr(out, "__next__") and hasattr(out, "send"):  # a generator of pairs
        vals = []
        for pair in out:
            try:
                k2, v2 = pair
            except (TypeError, ValueError):
                raise CombineError(f"combine for key {key!r} must yield (key, value) pairs, got {pair!r}") from None
            if k2 != key:
                raise CombineError(f"combine for key {key!r} yielded another key {k2!r}")
            vals.append(v2)
        return vals
    return [out]
