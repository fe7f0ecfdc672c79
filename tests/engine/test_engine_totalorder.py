"""Total-order output (`--total-order`, `Job(total_order=True)`) in local mode, against sorted():
the split points (pure), the range partitioner over mixed key types, whole jobs from the API and
the CLI (Python and streaming, the examples/sort job), skewed keys, and bad input. (On a cluster:
tests/faults/test_faults_totalorder.py.)"""
from __future__ import annotations

import json
import pathlib
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geryon.errors import JobDefinitionError
from geryon.mapreduce.job import Job
from geryon.mapreduce.order import total_key
from geryon.mapreduce.partition import RangePartition, split_by_partition
from geryon.mapreduce.totalorder import KeySample, sample_tasks, split_points


def _records(n: int, seed: int, hot: float = 0.0) -> bytes:
    """gensort-style records: a 10-byte printable key, a payload naming the record, a newline;
    a share `hot` of them with one same key."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        key = "HOTHOTHOT!" if rng.random() < hot else "".join(chr(rng.randrange(0x20, 0x7f)) for _ in range(10))
        out.append(f"{key}{i:032X}  {'ABCDEFGHIJKLMNOPQRSTUVWXYZ' * 2}xyz\n")
    return "".join(out).encode()


def _parts(out: pathlib.Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(out.iterdir()) if p.name.startswith("part-")]


# -- split points and the partitioner (pure) ----------------------------------------------

def test_split_points_cut_a_uniform_sample_into_equal_parts() -> None:
    keys = [f"k{i:05d}" for i in range(10_000)]
    random.Random(1).shuffle(keys)
    bounds = split_points(keys, 4)
    assert bounds == ("k02500", "k05000", "k07500")


def test_a_heavy_key_gets_a_part_to_itself_and_the_rest_stay_balanced() -> None:
    keys = [f"a{i:04d}" for i in range(2500)] + ["hot"] * 5000 + [f"z{i:04d}" for i in range(2500)]
    bounds = split_points(keys, 4)
    part = RangePartition(bounds)
    sizes = [0] * 4
    for k in keys:
        sizes[part(k, 4)] += 1
    assert sizes[part("hot", 4)] == 5000             # the hot key, alone: as far as one key allows
    others = [s for r, s in enumerate(sizes) if r != part("hot", 4)]
    assert max(others) <= 2500 and min(others) > 0   # no other part above an even share
    assert split_points(["x"] * 100, 5) == ()        # one key: one part
    assert split_points([], 3) == () and split_points(["a", "b"], 1) == ()


keys_strategy = st.one_of(st.integers(-50, 50), st.floats(-50, 50, allow_nan=False), st.text("abcz", max_size=3),
                          st.binary(max_size=2), st.none(), st.tuples(st.integers(0, 3), st.text("ab", max_size=2)))


@settings(max_examples=200, deadline=None)
@given(sample=st.lists(keys_strategy, max_size=60), keys=st.lists(keys_strategy, max_size=60), r=st.integers(1, 7))
def test_range_partition_follows_the_engines_total_order(sample, keys, r) -> None:
    bounds = split_points(sample, r)
    assert len(bounds) <= r - 1
    assert [total_key(b) for b in bounds] == sorted({total_key(b) for b in bounds})   # sorted, distinct
    part = RangePartition(bounds)
    ordered = sorted(keys, key=total_key)
    got = [part(k, r) for k in ordered]
    assert got == sorted(got) and all(0 <= p < r for p in got)   # parts read in order are sorted
    for k, p in zip(ordered, got):   # part p holds [bounds[p-1], bounds[p])
        assert p == sum(total_key(b) <= total_key(k) for b in bounds)
    buckets = split_by_partition(keys, r, part)   # the map side's batch path agrees, order kept
    assert buckets == [[k for k in keys if part(k, r) == i] for i in range(r)]


def test_key_sample_is_a_seeded_reservoir() -> None:
    a, b = KeySample(100, seed=3), KeySample(100, seed=3)
    for s in (a, b):
        for i in range(0, 10_000, 10):
            s.add([(j, None) for j in range(i, i + 10)])
        s.add({"x": 1})
        s.add(None)
    assert a.keys() == b.keys() and len(a.keys()) == 100 and a.pairs_in == 10_001
    assert max(a.keys(), key=str) != 99    # not the first 100


def test_sampling_tasks_do_not_depend_on_the_splits(tmp_path: pathlib.Path) -> None:
    """The same input planned into different splits gives the same sampling tasks' pieces."""
    from geryon.mapreduce.task import MapTask
    from geryon.records.split import FileRange, Split

    def maps(cut: int) -> list[MapTask]:
        ranges = [FileRange("/big", s, min(s + cut, 300 << 20)) for s in range(0, 300 << 20, cut)]
        return [MapTask(i, 0, Split("d", (r,)), "/root", "/w") for i, r in enumerate(ranges)]

    one, other = sample_tasks(maps(64 << 20), "lines", 4), sample_tasks(maps(7 << 20), "lines", 4)
    assert [t.split for t in one] == [t.split for t in other] and len(one) > 1
    assert all(t.sample and t.id.startswith("s") for t in one)
    assert sum(t.sample for t in one) >= 10_000
    assert sum(r.end - r.start for t in one for r in t.split.ranges) == 3 << 20   # 1 % of 300 MiB


# -- whole jobs -----------------------------------------------------------------------------

def mixed_map(key, value):
    for word in value.split():
        k = int(word[1:]) if word.startswith("#") else word   # ints and strs: the total order
        yield k, len(word)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.one_of(st.sampled_from(["hot"]), st.text("abcxyz", min_size=1, max_size=5),
                                st.integers(-20, 20).map(lambda i: f"#{i}")), max_size=300),
       hot=st.integers(0, 400), r=st.integers(1, 6), split=st.integers(30, 400))
def test_total_order_job_equals_sorted(tmp_path_factory, words, hot, r, split) -> None:
    """Random keys (strs and ints), a hot key with many values, random R and splits: the parts,
    read in order, are sorted() of the map output (values of a key in input order)."""
    root = tmp_path_factory.mktemp("to")
    disk = root / "in disk"
    disk.mkdir()
    words = words + ["hot"] * hot
    random.Random(len(words)).shuffle(words)
    lines = [" ".join(words[i:i + 7]) for i in range(0, len(words), 7)]
    (disk / "a.txt").write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    (disk / "b.txt").write_text("\n".join(lines[len(lines) // 2:]) + "\n")
    pairs = [p for ln in lines for p in mixed_map(None, ln)]
    want = sorted(pairs, key=lambda kv: total_key(kv[0]))   # stable: input order within a key
    job = Job(map=mixed_map, partitions=r, reader="lines", split_size=split, format="json", total_order=True)
    result = job.run([str(disk)], out=str(root / "out"), workers=2)
    assert [tuple(p) for p in result] == want
    parts = [[json.loads(ln.split("\t")[0]) for ln in part.decode().splitlines()] for part in _parts(root / "out")]
    assert len(parts) == r
    for left, right in zip(parts, parts[1:]):   # each part's keys sort before the next part's
        if left and right:
            assert total_key(left[-1]) < total_key(right[0])
    if pairs:
        assert result.report.part_bytes and len(result.report.part_bytes) == r


def test_parts_are_the_same_for_any_workers_and_splits(tmp_path: pathlib.Path, geryon_proc, examples) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "recs.txt").write_bytes(_records(6000, seed=5))
    outs = []
    for n, args in enumerate((("-j", "1"), ("-j", "3", "--split-size", "50K"))):
        out = tmp_path / f"out{n}"
        proc = geryon_proc("mapreduce", "-q", "--local", "--total-order", "-R", "3", "--reader", "lines", *args,
                           "--out", out, examples / "sort" / "sort.py", examples / "sort" / "sort.py",
                           tmp_path / "in", cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        outs.append(_parts(out))
    assert outs[0] == outs[1] and all(outs[0])


def test_sort_example_streaming_sorts_records_and_reports_the_balance(tmp_path: pathlib.Path, geryon_proc,
                                                                      examples) -> None:
    """examples/sort (map.sh, reduce.sh) from another directory, on two disks with spaces in
    their names: the parts are the input records, sorted by key, byte for byte."""
    data = _records(8000, seed=7, hot=0.3)
    disks = [tmp_path / "disk one", tmp_path / "disk two"]
    for d, chunk in zip(disks, (data[:300_000], data[300_000:])):
        d.mkdir()
        (d / "records 1.txt").write_bytes(chunk)
    work = tmp_path / "elsewhere"
    work.mkdir()
    proc = geryon_proc("mapreduce", "--local", "--total-order", "-R", "4", "--reader", "lines",
                       "--split-size", "64K", "--out", tmp_path / "sorted out",
                       examples / "sort" / "map.sh", examples / "sort" / "reduce.sh", *disks, cwd=str(work))
    assert proc.returncode == 0, proc.stderr
    parts = _parts(tmp_path / "sorted out")
    want = sorted(data.splitlines(keepends=True), key=lambda rec: rec[:10])
    assert b"".join(parts).splitlines(keepends=True) == want
    assert len(parts) == 4 and all(parts)
    # the hot key (30 % of the records) is one part's whole; the summary says how uneven that is
    line = next(ln for ln in proc.stderr.splitlines() if "total order: largest part" in ln)
    ratio = float(line.split("x the mean")[0].rsplit(" ", 1)[1])
    assert 1.0 <= ratio <= 1.6
    hot = [p for p in parts if b"HOTHOTHOT!" in p]
    assert len(hot) == 1 and all(rec.startswith(b"HOTHOTHOT!") for rec in hot[0].splitlines())


def test_a_sampler_over_an_empty_input_commits_empty_parts(tmp_path: pathlib.Path, geryon_proc, examples) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "r.txt").write_bytes(_records(1, seed=1))
    for disk, want in ((tmp_path / "empty", b""), (tmp_path / "one", _records(1, seed=1))):
        out = tmp_path / f"out-{disk.name}"
        proc = geryon_proc("mapreduce", "-q", "--local", "--total-order", "-R", "3", "--reader", "lines", "--out",
                           out, examples / "sort" / "map.sh", examples / "sort" / "reduce.sh", disk)
        assert proc.returncode == 0, proc.stderr
        assert len(_parts(out)) == 3 and b"".join(_parts(out)) == want and (out / "_SUCCESS").exists()


@pytest.mark.parametrize("args, message", [
    (("-R", "0", "{ cat }", "NONE"), "map-only job"),
    (("{ cat }", "NONE"), "map-only job"),
    (("--partitioner", "geryon", "{ cat }", "{ cat }"), "drop --partitioner geryon"),
    (("part.py", "part.py"), "defines partition(key, n)"),
])
def test_total_order_refuses_what_it_cannot_sort_in_one_line(tmp_path: pathlib.Path, geryon_proc, args,
                                                              message) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("b\na\n")
    (tmp_path / "part.py").write_text("def map(k, v):\n    yield v, 1\n\ndef reduce(k, vs):\n    return sum(vs)\n\n"
                                      "def partition(key, n):\n    return 0\n")
    proc = geryon_proc("mapreduce", "--local", "--total-order", "--out", tmp_path / "out", *args, tmp_path / "in",
                       cwd=str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("geryon: ")
    assert not (tmp_path / "out").exists()


def test_a_map_failing_while_sampled_fails_the_job_and_commits_nothing(tmp_path: pathlib.Path, geryon_proc) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("fine\nbad line\n")
    (tmp_path / "m.py").write_text("def map(k, v):\n    if ' ' in v:\n        raise ValueError('no spaces: ' + v)\n"
                                   "    yield v, 1\n\ndef reduce(k, vs):\n    return sum(vs)\n")
    proc = geryon_proc("mapreduce", "--local", "--total-order", "--reader", "lines", "--out", tmp_path / "out",
                       "m.py", "m.py", tmp_path / "in", cwd=str(tmp_path))
    assert proc.returncode == 1
    assert "sampling for --total-order" in proc.stderr and "ValueError: no spaces: bad line" in proc.stderr
    assert not list((tmp_path / "out").glob("part-*")) and not (tmp_path / "out" / "_SUCCESS").exists()


def test_total_order_job_definitions_refused() -> None:
    def f(key, n):
        return 0

    with pytest.raises(JobDefinitionError, match="map-only"):
        Job(map="cat", partitions=0, total_order=True)
    with pytest.raises(JobDefinitionError, match="drop its partition function"):
        Job(map=mixed_map, partition=f, total_order=True)
    with pytest.raises(JobDefinitionError, match="geryon hash"):
        Job(map="cat", reduce="cat", partitioner="geryon", total_order=True)
    with pytest.raises(JobDefinitionError, match="True or False"):
        Job(map="cat", reduce="cat", total_order="yes")  # type: ignore[arg-type]
