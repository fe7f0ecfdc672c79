"""Values that grow late, and one value larger than the budget, in the map side's sort buffer.

The buffer used to price every value at the size of the first ones it sampled (the first
values of each key's list, sampled again only when the counts doubled, and never after a
spill), so a map whose values grew late (small first, then 5 KB) filled runs far past the
budget: 64M peaked at 204-260 MiB. Values are now measured as they arrive.
"""
from __future__ import annotations

from pathlib import Path

from geryon.mapreduce.partition import crc32_partition
from geryon.mapreduce.segments import file_chunks, iter_records
from geryon.mapreduce.sortbuffer import SortBuffer

BUDGET = 4 << 20


def _late_growing(small: int = 200_000, big: int = 6000, size: int = 5120):
    """Small values first (12 bytes), over 3,000 keys; then big ones for the same keys."""
    for i in range(small):
        yield f"k{i % 3000:04d}", f"{i:012d}"
    for i in range(big):
        yield f"k{i % 3000:04d}", (f"{i:012d}" * (size // 12 + 1))[:size]


def _records(path: Path, segments) -> list:
    return [list(iter_records(file_chunks(str(path), s.offset, s.length))) for s in segments]


def test_values_that_grow_late_are_spilled_at_their_own_size(tmp_path: Path) -> None:
    (tmp_path / "small").mkdir()
    buf = SortBuffer(2, crc32_partition, None, False, BUDGET, str(tmp_path / "small"))
    buf.add(_late_growing())
    buf.spill()  # what it still holds, too
    runs = [sum(s.length for s in segs) for _, segs in buf._runs]
    # 30 MB of big values: every run within the budget (its payload; objects take more).
    assert buf.spills >= 30_000_000 // BUDGET, (buf.spills, runs)
    assert max(runs) <= BUDGET, [r >> 10 for r in runs]
    got = _records(tmp_path / "out-small", buf.finish(str(tmp_path / "out-small")))
    (tmp_path / "whole").mkdir()
    whole = SortBuffer(2, crc32_partition, None, False, 1 << 30, str(tmp_path / "whole"))
    whole.add(_late_growing())
    assert whole.spills == 0
    assert got == _records(tmp_path / "out-whole", whole.finish(str(tmp_path / "out-whole")))


def test_one_call_per_pair_growing_late_is_spilled_at_its_own_size(tmp_path: Path) -> None:
    buf = SortBuffer(1, crc32_partition, None, False, BUDGET, str(tmp_path))
    for pair in _late_growing():
        buf.add([pair])
    buf.spill()
    runs = [sum(s.length for s in segs) for _, segs in buf._runs]
    assert runs and max(runs) <= BUDGET, [r >> 10 for r in runs]


def test_a_value_larger_than_the_budget_is_one_line_and_a_smaller_big_one_passes(tmp_path: Path, geryon_proc) -> None:
    disk = tmp_path / "in disk"
    disk.mkdir()
    (disk / "a.txt").write_text("one two\n")
    (disk / "b.txt").write_text("three\n")
    (tmp_path / "map.py").write_text(
        "import geryon\n\n"
        "def map(key, value):\n"
        "    n = int(geryon.param('n'))\n"
        "    for w in value.split():\n"
        "        yield w, w[0] * n\n")
    (tmp_path / "reduce.py").write_text("def reduce(key, values):\n    return sum(len(v) for v in values)\n")
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(n: int, out: str):
        return geryon_proc("mapreduce", "-q", tmp_path / "map.py", tmp_path / "reduce.py", disk,
                           "--sort-budget", "1M", "-D", f"n={n}", "-j", "1", "--out", tmp_path / out,
                           env={"HOME": str(tmp_path / "home"), "GERYON_JOBS_DIR": str(tmp_path / "jobs")},
                           cwd=str(work))

    ok = run(700_000, "ok")  # 700 KB values at a 1 MiB budget: each spilled alone, counted right
    assert ok.returncode == 0, ok.stderr
    got = dict(line.split("\t") for p in sorted((tmp_path / "ok").glob("part-*")) for line in p.read_text().splitlines())
    assert got == {"one": "700000", "two": "700000", "three": "700000"}
    big = run(3 << 20, "big")
    assert big.returncode == 1, big.stderr
    lines = big.stderr.strip().splitlines()
    assert len(lines) == 1, big.stderr
    assert lines[0].startswith("geryon: map task m") and "a value of 3.0 MiB" in lines[0], lines
    assert "larger than --sort-budget 1.0 MiB" in lines[0] and "raise --sort-budget" in lines[0], lines
    assert not (tmp_path / "big").exists() or not any((tmp_path / "big").iterdir())
