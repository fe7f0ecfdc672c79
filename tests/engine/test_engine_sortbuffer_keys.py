"""Keys that grow late: short keys first, then 1 KB ones, in the sort buffer, the reduce's sum
aggregation and the blocks they write.

The buffers priced every key at the size sampled when the key count last doubled, so keys that
became long after a sample were counted as short ones until the count doubled again: at 64M,
250,000 short keys then 1 KB ones peaked at 144-154 MiB of Python objects (16M: 30-32 MiB), a
spilled run held 20 MB of keys at 16M. Blocks of key lists did not count their keys at all, so a
spill of 1 KB keys wrote 16 MB blocks (16,384 records), packed and later decoded whole (16M: 44 MiB).
The reduce's merge of spilled sums handed on chunks of 16,384 keys (16 MB of 1 KB keys). New keys
are now measured as they arrive, every block chunk as it is cut, and a merge's chunk as it grows.

Memory is what tracemalloc sees (Python's allocations: deterministic, the same on every machine),
the test's own input included (`mappings`: the current 1,000-key mapping, 1 MB).
"""
from __future__ import annotations

import itertools
import tracemalloc
from pathlib import Path

import pytest

from geryon.mapreduce.aggregate import sum_blocks
from geryon.mapreduce.codec import block_stream
from geryon.mapreduce.partition import crc32_partition
from geryon.mapreduce.segments import BLOCK_BYTES, file_chunks, iter_records
from geryon.mapreduce.sortbuffer import SortBuffer

MIB = 1 << 20
BUDGET = 8 * MIB
SLACK = 8 * MIB
"""Above the budget: a spill's key list and a block being packed, or a merge's two open runs
(measured 1-6 MiB), and the caller's mapping (`mappings`: 1 MB)."""

SHORT = 100_000
LONG = 16_000


def _late_keys(short: int = SHORT, long: int = LONG):
    """(key, 1): `short` 8-byte keys, then `long` distinct 1 KB keys."""
    for i in range(short):
        yield f"s{i:07d}", 1
    for i in range(long):
        yield (f"b{i:07d}" * 128)[:1024], 1


def _feed(buf: SortBuffer, how: str) -> None:
    if how == "generator":
        buf.add(_late_keys())
    elif how == "one pair a call":
        for pair in _late_keys():
            buf.add([pair])
    else:  # one mapping a call, as word count's Counter per record
        it = _late_keys()
        while chunk := dict(itertools.islice(it, 1000)):
            buf.add(chunk)


def _records(path: Path, segments) -> list:
    return [list(iter_records(file_chunks(str(path), s.offset, s.length))) for s in segments]


def _traced_peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("how, sums", [("generator", True), ("mappings", True), ("generator", False),
                                       ("one pair a call", False)],
                         ids=["sums", "sums-of-mappings", "lists", "lists-one-pair-a-call"])
def test_keys_that_grow_late_are_spilled_at_their_own_size(tmp_path: Path, how: str, sums: bool) -> None:
    (tmp_path / "small").mkdir()
    buf = SortBuffer(2, crc32_partition, None, sums, BUDGET, str(tmp_path / "small"))

    def fill() -> None:
        _feed(buf, how)
        buf.spill()  # what it still holds, too

    peak = _traced_peak(fill)
    runs = [sum(s.length for s in segs) for _, segs in buf._runs]
    assert peak <= BUDGET + SLACK, (peak // MIB, [r // MIB for r in runs])
    # 30 MB of long keys: every run within the budget (its payload; the objects take more).
    assert len(runs) >= 2 and max(runs) <= BUDGET, [r >> 10 for r in runs]
    for path, segs in buf._runs:
        for s in segs:
            for _, keys, _ in block_stream(file_chunks(path, s.offset, s.length)):
                size = sum(map(len, keys))
                assert size <= 2 * BLOCK_BYTES, (len(keys), size)
    got = _records(tmp_path / "out-small", buf.finish(str(tmp_path / "out-small")))
    (tmp_path / "whole").mkdir()
    whole = SortBuffer(2, crc32_partition, None, sums, 1 << 30, str(tmp_path / "whole"))
    _feed(whole, how)
    assert whole.spills == 0
    assert got == _records(tmp_path / "out-whole", whole.finish(str(tmp_path / "out-whole")))


@pytest.mark.parametrize("budget", [BUDGET, 1 << 30], ids=["spilled", "in-memory"])
def test_a_sum_reduce_over_keys_that_grow_late_keeps_its_budget(budget: int) -> None:
    # The reduce's hash aggregation: blocks of short keys, then blocks of 1 KB keys; the chunks
    # it hands on are formatted as lines at once (16,384 keys a chunk: 16 MB of 1 KB keys).
    def blocks():
        it = _late_keys()
        while chunk := list(itertools.islice(it, 4096)):
            yield True, [k for k, _ in chunk], [v for _, v in chunk]

    out: list = []
    biggest: list = [0]

    def reduce() -> None:
        n = 0
        for ks, vs in sum_blocks(blocks(), budget, mixed=False):
            n += len(ks)
            biggest[0] = max(biggest[0], sum(map(len, ks)))
            assert sum(vs) == len(vs)
        out.append(n)

    peak = _traced_peak(reduce)
    assert out == [SHORT + LONG]
    assert biggest[0] <= 2 * BLOCK_BYTES, biggest
    if budget == BUDGET:
        assert peak <= BUDGET + SLACK, peak // MIB
