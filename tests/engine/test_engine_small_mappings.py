"""A map call's mapping is summed into the sort buffer by a plain loop when it is small (a
line's words, `--reader lines`) and in one C-level pass when it is large: both give the same
sums, through spills, and both name a value that is not a number."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from geryon.errors import GeryonError
from geryon.mapreduce.partition import crc32_partition
from geryon.mapreduce.segments import file_chunks, iter_records
from geryon.mapreduce.sortbuffer import SMALL_MAPPING, SortBuffer


def _sums(path: Path, segments) -> Counter:
    got: Counter = Counter()
    for seg in segments:
        for k, vals in iter_records(file_chunks(str(path), seg.offset, seg.length)):
            got[k] += sum(vals)
    return got


@pytest.mark.parametrize("budget", [1 << 20, 256 << 20])        # spilled many times, and never
def test_small_and_large_mappings_sum_alike(tmp_path: Path, budget: int) -> None:
    rng = random.Random(5)
    words = [f"w{i}" for i in range(20000)]
    expected: Counter = Counter()
    pairs = 0
    buf = SortBuffer(3, crc32_partition, sum, True, budget, str(tmp_path), ordered=False)
    sizes = [1, 2, 3, SMALL_MAPPING - 1, SMALL_MAPPING, SMALL_MAPPING + 1, 200, 3000]
    for i in range(3000):
        out = Counter(rng.choices(words, k=sizes[i % len(sizes)]))
        expected.update(out)
        pairs += len(out)
        buf.add(out if i % 2 else dict(out))
    assert buf.pairs_in == pairs
    out = tmp_path / "out"
    segments = buf.finish(str(out))
    assert _sums(out, segments) == expected
    if budget == 1 << 20:
        assert buf.spills > 0


@pytest.mark.parametrize("size", [2, SMALL_MAPPING + 5])
def test_a_value_that_is_not_a_number_is_named_whatever_the_size(tmp_path: Path, size: int) -> None:
    buf = SortBuffer(2, crc32_partition, sum, True, 1 << 20, str(tmp_path), ordered=False)
    buf.add({"a": 1, "b": 2})
    bad = {f"k{i}": i for i in range(size - 1)} | {"bad": "x"}
    with pytest.raises(GeryonError, match=r"combine sums values, but 'x' \(key 'bad'\) is not a number"):
        buf.add(bad)
