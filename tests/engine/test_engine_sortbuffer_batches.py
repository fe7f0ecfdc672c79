"""One map call that yields more than the sort budget (a generator over a big record) is
spilled part way through, at the budget, not consumed whole and then spilled once; many
runs are merged in passes, with the output of one unspilled buffer."""
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


def _records(path: Path, segments) -> list[list]:
    from geryon.mapreduce.segments import file_chunks, iter_records

    parts = []
    for seg in segments:
        grouped: list = []
        for k, vals in iter_records(file_chunks(str(path), seg.offset, seg.length)):
            if grouped and grouped[-1][0] == k:
                grouped[-1][1].extend(vals)  # a long list may be cut into consecutive records
            else:
                grouped.append((k, list(vals)))
        parts.append(grouped)
    return parts


def _big_pairs():
    for i in range(6000):                        # 30 MB of 5 KB values over 300 keys
        k = f"k{i * 7919 % 300:04d}"
        yield k, f"{i:06d}" * 853


def test_many_runs_are_merged_in_passes_with_the_same_output(tmp_path: Path) -> None:
    # A final merge keeps every run open (a read chunk and a decoded block each), so a task
    # that spilled 30 runs would hold 30 of those beyond its budget: they are merged in passes
    # of budget / MERGE_STREAM_BYTES (here 2) runs, and the output is the same as unspilled.
    (tmp_path / "small").mkdir()
    (tmp_path / "whole").mkdir()
    small = SortBuffer(3, crc32_partition, None, False, 1 << 20, str(tmp_path / "small"))
    small.add(_big_pairs())
    assert small.spills >= 16, small.spills
    got = _records(tmp_path / "out-small", small.finish(str(tmp_path / "out-small")))
    assert small.merge_passes >= small.spills - 2, (small.merge_passes, small.spills)
    assert list((tmp_path / "small").iterdir()) == []  # every run file removed
    whole = SortBuffer(3, crc32_partition, None, False, 1 << 30, str(tmp_path / "whole"))
    whole.add(_big_pairs())
    assert whole.spills == 0
    want = _records(tmp_path / "out-whole", whole.finish(str(tmp_path / "out-whole")))
    assert got == want
    assert sum(len(v) for part in got for _, v in part) == 6000
