"""What a buffer of keys and values costs in memory: a deterministic estimate, kept honest.

The sort buffer (`sortbuffer`) and the sum aggregation (`aggregate`) hold a dict of
distinct keys and spill it at the sort budget. What a dict really takes is more than its
payload bytes: every key and value is a Python object (rounded up to the allocator's 16
bytes), and the hash table itself, whose size `sys.getsizeof` reports exactly, doubles when
it fills, so for a moment the old table and the new one (twice as large) both exist. The
estimate counts the table three times, so that the peak of the next doubling is within the
budget before it happens, and samples the average key and value sizes at the first key and
each time the number of keys (or, for lists, of values) doubles (a strided sample: the same
input gives the same estimate, so spill points, and with them the output bytes, never
depend on timing or on the machine's state). Callers that measure what arrives
(`measured_bytes`: the sort buffer's values and new keys, the aggregation's new keys) pass
the totals, so keys or values that grow after a sample are counted at their own size.

Not here: when to spill (the buffers decide), the process's own memory (`memory`).
"""
from __future__ import annotations

import itertools
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

SAMPLE = 256
"""Keys sampled (evenly spaced) each time the number of keys doubles."""

TABLE_COPIES = 3
"""Times the hash table is counted: itself, and the twice-larger table of its next doubling."""

ALLOC_ALIGN = 16
"""The allocator's granularity: an object of n bytes takes n rounded up to this."""

STR_OBJECT = 56
"""What a str or bytes object takes beyond its length (CPython: 49 and 33 bytes, aligned)."""

_SMALL_INTS = range(-5, 257)  # CPython shares these: a count of 1 costs no object


def object_bytes(obj: Any) -> int:
    """What one key or value takes: its size rounded up to the allocator's granularity."""
    if type(obj) is int and obj in _SMALL_INTS or obj is None or obj is True or obj is False:
        return 0
    n = sys.getsizeof(obj)
    if type(obj) in (list, tuple):
        n += sum(object_bytes(x) for x in obj)
    return -(-n // ALLOC_ALIGN) * ALLOC_ALIGN


def measured_bytes(objs: list, sample: int = 8) -> int:
    """What the objects of a non-empty list take: their lengths when all are str or bytes (exact
    for ASCII), else `sample` evenly spaced ones and the last, scaled up (the larger of the two)."""
    n = len(objs)
    some = objs[::max(1, n // sample)]
    some.append(objs[-1])
    total = sum(map(object_bytes, some)) * n // len(some)
    try:
        return max(total, sum(map(len, objs)) + n * STR_OBJECT)
    except TypeError:
        return total  # numbers, or a mixture: the sample


class DictFootprint:
    """Estimates the memory of one dict of keys to values (or to lists of values).

    Call `estimate(d, nvalues)` after adding to `d`: it samples at the first key and again
    when `len(d)` or `nvalues` has doubled since the last sample, so its cost is amortised over
    the additions (a few keys holding long lists of big values are counted as such, not as
    the 64 bytes a key is guessed at before any sample).
    """

    def __init__(self) -> None:
        self.key_bytes = 64  # per distinct key, until sampled
        self.value_bytes = 0  # per value (sums: the running total; lists: each element)
        self._sampled_at = 0
        self._sampled_values = 0

    def reset(self) -> None:
        """The dict was emptied (spilled): sample again as it refills."""
        self._sampled_at = 0
        self._sampled_values = 0

    def estimate(self, d: dict, nvalues: int = 0, lists: bool = False, value_total: int | None = None,
                 key_total: int | None = None) -> int:
        """Bytes `d` takes; `nvalues` the values held in its lists (`lists`) if it maps keys to lists,
        and `value_total` their bytes when the caller measured them as they came (else sampled);
        `key_total` likewise for its keys (the larger of it and the sampled size is taken)."""
        n = len(d)
        if n and (not self._sampled_at or n >= 2 * self._sampled_at and n >= 16
                  or lists and nvalues >= 2 * self._sampled_values and nvalues >= 16):
            self._sample(d, lists)
            self._sampled_at, self._sampled_values = n, nvalues
        keys = n * self.key_bytes if key_total is None else max(key_total, n * self.key_bytes)
        if lists:
            # A list object per key (56 bytes, overallocated) and a slot plus the value per element.
            values = nvalues * self.value_bytes if value_total is None else value_total
            return keys + n * 64 + nvalues * 8 + values + TABLE_COPIES * sys.getsizeof(d)
        return keys + n * self.value_bytes + TABLE_COPIES * sys.getsizeof(d)

    def _sample(self, d: dict, lists: bool) -> None:
        n = len(d)
        step = max(1, n // SAMPLE)
        keys = list(itertools.islice(iter(d), 0, None, step))
        self.key_bytes = sum(map(object_bytes, keys)) // len(keys)
        if lists:
            vals = [v for k in keys for v in d[k][:4]]
            self.value_bytes = sum(map(object_bytes, vals)) // len(vals) if vals else 0
        else:
            self.value_bytes = sum(object_bytes(d[k]) for k in keys) // len(keys)
