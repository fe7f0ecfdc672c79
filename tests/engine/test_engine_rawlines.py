"""The streaming shuffle kept as bytes (`geryon.mapreduce.rawlines`) gives the generic path's bytes.

A streaming map into a streaming reduce keeps its lines as bytes from the map's command to the
reducer's stdin; every test here holds it to the generic path (pairs in a dict, msgpack blocks,
`order`'s merge): the same lines in the same order for random lines with equal keys, empty keys
and values, lines without a tab, tabs in values, carriage returns, non-ASCII, a hot key, at a budget
that spills and merges in passes, with the hash or a total order, and with map outputs that are
not UTF-8 (which send their task, and the reduce reading them, back to the generic path).
"""
from __future__ import annotations

import pathlib
import random
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geryon.mapreduce import maptask, rawlines
from geryon.mapreduce.job import Job
from geryon.mapreduce.partition import RangePartition, crc32_partition
from geryon.mapreduce.rawlines import LineBuffer, line_blocks, merge_lines
from geryon.mapreduce.segments import file_chunks, iter_records
from geryon.mapreduce.sortbuffer import SortBuffer
from geryon.mapreduce.streaming import split_block

KEYS = ["a", "b", "ab", "a b", "", "é", "日本", "z\r", "hot", "~", "A", "a\x01", "0", "00"]
VALUES = ["", "1", "v\tw", "x y", "é", "\r", "long" * 30]


def random_lines(rng: random.Random, n: int, hot: float = 0.0) -> bytes:
    """Map output lines: `key<TAB>value` mostly, some without a tab, some keys hot."""
    out = []
    for _ in range(n):
        key = "hot" if rng.random() < hot else rng.choice(KEYS) + rng.choice(["", str(rng.randrange(40))])
        shape = rng.random()
        if shape < 0.1:
            out.append(f"{key}\n")   # no tab: all key
        else:
            out.append(f"{key}\t{rng.choice(VALUES)}{rng.randrange(1000)}\n")
    return "".join(out).encode()


def _key(line: bytes) -> bytes:
    return line.partition(b"\t")[0]


def _normal(line: bytes) -> bytes:
    return line if b"\t" in line else line + b"\t"


def _blocks(lines: list[bytes], rng: random.Random) -> Iterator[list[bytes]]:
    i = 0
    while i < len(lines):
        n = rng.randrange(1, 40)
        yield lines[i:i + n]
        i += n


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), streams=st.integers(0, 6), hot=st.sampled_from([0.0, 0.3, 0.9]))
def test_merge_lines_is_a_stable_merge(seed: int, streams: int, hot: float) -> None:
    rng = random.Random(seed)
    runs = []
    for s in range(streams):
        lines = [_normal(ln) + b"#%d" % s for ln in random_lines(rng, rng.randrange(0, 120), hot).splitlines()]
        runs.append(sorted(lines, key=_key))   # stable: input order within a key
    want = sorted((ln for run in runs for ln in run), key=_key)   # stable: stream order within a key
    got_lines, got_keys = [], []
    for lines, keys in merge_lines([_blocks(run, rng) for run in runs]):
        got_lines += lines
        got_keys += keys
    assert got_lines == want
    assert got_keys == [_key(ln) for ln in want]


def _generic_segments(data: list[bytes], r: int, part, budget: int, spill: pathlib.Path) -> list[list[bytes]]:
    """The generic sort buffer's map output for these blocks, its records as reducer input lines."""
    buf = SortBuffer(r, part, None, False, budget, str(spill))
    for block in data:
        buf.add(split_block(block))
    out = spill / "generic.out"
    segs = buf.finish(str(out))
    parts = []
    for seg in segs:
        parts.append([f"{k}\t{v}".encode("utf-8", "surrogateescape")
                      for k, vs in iter_records(file_chunks(str(out), seg.offset, seg.length)) for v in vs])
    return parts


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), r=st.integers(1, 5), total=st.booleans(),
       budget=st.sampled_from([1500, 20_000, 1 << 30]), hot=st.sampled_from([0.0, 0.5]))
def test_a_line_buffer_writes_what_the_sort_buffer_writes(tmp_path: pathlib.Path, seed: int, r: int, total: bool,
                                                          budget: int, hot: float) -> None:
    """Segment by segment, the same records in the same order: in one run, spilled, and merged in
    passes (a 1,500-byte budget holds a few lines; `merge_fan_in` is then 2)."""
    rng = random.Random(seed)
    data = [random_lines(rng, rng.randrange(1, 60), hot) for _ in range(rng.randrange(1, 12))]
    if budget == 1500:
        data += [random_lines(rng, 40, hot) for _ in range(4)]
    if total:
        sample = sorted({ln.partition(b"\t")[0].decode() for block in data for ln in block.splitlines()})
        part = RangePartition(sorted(rng.sample(sample, min(len(sample), r - 1))))
    else:
        part = crc32_partition
    spill = pathlib.Path(tempfile.mkdtemp(dir=tmp_path))
    buf = LineBuffer(r, part, budget, str(spill))
    assert all(buf.add_block(block) for block in data)
    out = spill / "lines.out"
    segs = buf.finish(str(out))
    assert all(s.lines for s in segs) and len(segs) == r
    if budget == 1500:
        assert buf.spills > 2 and buf.merge_passes > 0
    got = [[ln for lines in line_blocks(file_chunks(str(out), s.offset, s.length)) for ln in lines] for s in segs]
    assert got == _generic_segments(data, r, part, 1 << 30, spill)
    assert [s.records for s in segs] == [len(g) for g in got]
    assert sorted(p.name for p in spill.iterdir()) == ["generic.out", "lines.out"]   # no run left behind


def test_a_block_that_is_not_utf8_is_refused_and_the_lines_held_handed_over(tmp_path: pathlib.Path) -> None:
    rng = random.Random(1)
    good = [random_lines(rng, 50, 0.3) for _ in range(6)]
    buf = LineBuffer(3, crc32_partition, 2000, str(tmp_path))
    for block in good:
        assert buf.add_block(block)
    assert buf.spills > 0
    assert not buf.add_block(b"caf\xe9\tx\n")
    generic = SortBuffer(3, crc32_partition, None, False, 1 << 30, str(tmp_path))
    buf.hand_over(generic)
    generic.add(split_block(b"caf\xe9\tx\n"))
    assert list(tmp_path.iterdir()) == []   # the runs are gone
    generic.finish(str(tmp_path / "handed.out"))
    want = SortBuffer(3, crc32_partition, None, False, 1 << 30, str(tmp_path))
    for block in [*good, b"caf\xe9\tx\n"]:
        want.add(split_block(block))
    want.finish(str(tmp_path / "want.out"))
    assert (tmp_path / "handed.out").read_bytes() == (tmp_path / "want.out").read_bytes()


def test_which_jobs_keep_their_lines() -> None:
    on = Job(map="cat", reduce="cat", partitions=3)
    assert rawlines.applies(on, crc32_partition)
    assert rawlines.applies(on, RangePartition(["b", "é"]))
    assert not rawlines.applies(on, RangePartition(["b", "\udce9"]))   # a surrogate sorts otherwise as bytes
    assert not rawlines.applies(on, RangePartition([1, 2]))
    assert not rawlines.applies(on, lambda k, n: 0)
    for off in (Job(map="cat", reduce=None, partitions=3), Job(map="cat", reduce="cat", combine="cat"),
                Job(map="cat", reduce="cat", key_fields=2), Job(map=lambda k, v: [(k, v)], reduce="cat"),
                Job(map="cat", partitions=0)):
        assert not rawlines.applies(off, crc32_partition)


# -- whole jobs, local mode ------------------------------------------------------------------


def _corpus(root: pathlib.Path, seed: int, files: int, lines: int, bad: bool) -> pathlib.Path:
    rng = random.Random(seed)
    disk = root / f"in {seed}"
    disk.mkdir()
    for f in range(files):
        data = random_lines(rng, lines, hot=0.2 if f == 0 else 0.0)
        if bad and f == files - 1:
            data += b"caf\xe9\t\xff\n\xfe\n"   # not UTF-8: that map task goes the generic way
        (disk / f"part {f}.txt").write_bytes(data)
    return disk


class Marked(LineBuffer):
    """A LineBuffer that leaves a file behind when it writes a map output: the fast path was taken."""

    marks: pathlib.Path

    def finish(self, out_path: str):
        (self.marks / pathlib.Path(out_path).name).touch()
        return super().finish(out_path)


def _run(job: Job, disk: pathlib.Path, out: pathlib.Path) -> list[bytes]:
    job.run([str(disk)], out=str(out), workers=2)
    return [p.read_bytes() for p in sorted(out.iterdir()) if p.name.startswith("part-")]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 1000), r=st.integers(1, 5), total=st.booleans(), small=st.booleans(),
       bad=st.booleans(), mapper=st.sampled_from(["cat", "awk -F'\t' -v OFS='\t' '{print $2, $1}'"]))
def test_streaming_jobs_give_the_generic_paths_bytes(tmp_path: pathlib.Path, seed: int, r: int,
                                                     total: bool, small: bool, bad: bool, mapper: str) -> None:
    """Local mode, 2 workers: the parts of a streaming job are the same bytes with its lines kept as
    bytes as through the generic path; at a 1 MiB budget the reduces merge in passes (2 at a time)."""
    case = pathlib.Path(tempfile.mkdtemp(dir=tmp_path))
    disk = _corpus(case, seed, files=3, lines=2000, bad=bad)
    job = Job(map=mapper, reduce="cat", partitions=r, reader="lines", total_order=total,
              split_size=32 << 10, sort_budget=(1 << 20) if small else (256 << 20))
    marks = case / "marks"
    marks.mkdir()
    with pytest.MonkeyPatch.context() as mp:   # one per example: hypothesis runs many in one test
        mp.setattr(Marked, "marks", marks, raising=False)
        mp.setattr(maptask, "LineBuffer", Marked)
        fast = _run(job, disk, case / "fast")
        fast_maps = len(list(marks.iterdir()))
        assert fast_maps >= 3   # the map tasks kept their lines (but the one reading bad bytes)
        mp.setattr(maptask, "applies_to_lines", lambda job, part: False)
        generic = _run(job, disk, case / "generic")
        assert len(list(marks.iterdir())) == fast_maps   # ... and none did this time
    assert fast == generic and len(fast) == r
    lines = b"".join(fast).split(b"\n")[:-1]
    assert len(lines) == sum(p.read_bytes().count(b"\n") for p in disk.iterdir())
    if total:
        keys = [ln.partition(b"\t")[0].decode("utf-8", "surrogateescape") for ln in lines]
        assert keys == sorted(keys)


def test_the_sort_example_keeps_its_lines_and_sorts(tmp_path: pathlib.Path, monkeypatch) -> None:
    """examples/sort's map.sh and reduce.sh on gensort-like records with equal keys: the records back
    as they were, sorted by key, equal keys in input order, as the generic path gives them."""
    examples = pathlib.Path(__file__).resolve().parents[2] / "examples" / "sort"
    rng = random.Random(4)
    disk = tmp_path / "records"
    disk.mkdir()
    pool = [("".join(rng.choice(" !AZaz~") for _ in range(8)) + rng.choice(["é", ".."])).encode()
            for _ in range(3000)]   # 10 bytes, some not ASCII; equal keys
    recs = [rng.choice(pool) + b"%032X  %s" % (i, b"Q" * 55) for i in range(20_000)]
    (disk / "gensort.dat").write_bytes(b"\n".join(recs) + b"\n")
    job = Job(map=str(examples / "map.sh"), reduce=str(examples / "reduce.sh"), partitions=4, reader="lines",
              total_order=True, split_size=256 << 10, sort_budget=1 << 20)
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setattr(Marked, "marks", marks, raising=False)
    monkeypatch.setattr(maptask, "LineBuffer", Marked)
    fast = _run(job, disk, tmp_path / "fast")
    assert list(marks.iterdir())
    assert b"".join(fast).splitlines() == sorted(recs, key=lambda rec: rec[:10])
    monkeypatch.setattr(maptask, "applies_to_lines", lambda job, part: False)
    assert _run(job, disk, tmp_path / "generic") == fast

