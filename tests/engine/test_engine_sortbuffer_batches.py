"""One map call that yields more than the sort budget (a generator over a big record) is
spilled part way through, at the budget, not consumed whole and then spilled once."""
from __future__ import annotations

from pathlib import Path

from geryon.mapreduce.partition import crc32_partition
from geryon.mapreduce.sortbuffer import SortBuffer


def _pairs(n: int, size: int):
    for i in range(n):
        k = f"{i:08d}"
        yield k, k * (size // 8)


def test_a_generator_bigger_than_the_budget_is_spilled_as_it_is_read(tmp_path: Path) -> None:
    budget = 1 << 20
    buf = SortBuffer(2, crc32_partition, None, False, budget, str(tmp_path))
    seen = []

    def pairs():
        for pair in _pairs(4000, 4096):          # about 16 MiB in one call: 16 budgets
            seen.append(buf.spills)
            yield pair

    buf.add(pairs())
    assert buf.spills >= 8, buf.spills
    assert seen[len(seen) // 2] > 0            # spilled before the call ended
    segments = buf.finish(str(tmp_path / "out"))
    assert segments
