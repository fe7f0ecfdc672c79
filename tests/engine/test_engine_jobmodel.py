"""The job model beyond map + reduce, in local mode, against sequential references: map-only jobs
(`-R 0`, REDUCE `NONE`), and their bad input. (The same jobs on a cluster: tests/faults/test_faults_jobmodel.py.)"""
from __future__ import annotations

import json
import pathlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geryon.errors import JobDefinitionError
from geryon.mapreduce.job import Job

LINE_MAP = '''
def map(key, value):
    for line in value.splitlines():
        yield line[::-1], len(line)
'''


def upper_map(key, value):
    yield value.upper(), len(value)


LAYOUT = {
    "zeta disk": {"b file.txt": "one\ntwo\tTAB\nthree\n", "a.txt": "alpha\nbeta\n"},
    "alpha": {"x.txt": "".join(f"line {i}\n" for i in range(40)), "y y.txt": "last\n"},
}


def _sequential(disks: list[pathlib.Path]) -> list[str]:
    """Every input line, disk order then file name order: what a map-only job's parts hold, in order."""
    return [line for d in disks for f in sorted(d.iterdir()) for line in f.read_text().splitlines()]


def _part_lines(out: pathlib.Path) -> list[list[str]]:
    parts = sorted(p for p in out.iterdir() if p.name.startswith("part-"))
    return [p.read_text().splitlines() for p in parts]


def test_map_only_api_writes_one_part_per_map_task_in_input_order(dir_disks, tmp_path: pathlib.Path,
                                                                  monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    disks = dir_disks(tmp_path / "in", LAYOUT)
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "lines.py").write_text(LINE_MAP)
    from geryon.mapreduce.job import load_script

    script = load_script(str(tmp_path / "job" / "lines.py"))
    job = Job(map=script.map, partitions=0, reader="file", split_size=40, format="json")
    result = job.run([str(d) for d in disks], out=str(tmp_path / "out"), workers=2)
    assert len(result.parts) == result.report.map.tasks > 2
    want = [(line[::-1], len(line)) for line in _sequential(disks)]
    assert list(result) == want           # parts in map-task order, each in input order
    assert all(lines for lines in _part_lines(tmp_path / "out"))   # every map task has its own part
    assert [json.loads(ln.split("\t")[0]) for p in _part_lines(tmp_path / "out") for ln in p] == [k for k, _ in want]


def test_map_only_streaming_cli_keeps_the_mappers_lines_unchanged(dir_disks, tmp_path: pathlib.Path,
                                                                  geryon_proc) -> None:
    disks = dir_disks(tmp_path / "in", LAYOUT)
    for args in (("-R", "0"), ()):
        out = tmp_path / f"out{len(args)}"
        proc = geryon_proc("mapreduce", "-q", *args, "--local", "--reader", "lines", "--split-size", "30",
                           "--out", out, "{ tr a-z A-Z }", "NONE", *disks, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        parts = _part_lines(out)
        assert len(parts) > 2
        assert [ln for p in parts for ln in p] == [ln.upper() for ln in _sequential(disks)]
        assert (out / "_SUCCESS").exists()


def test_map_only_python_cli_text(dir_disks, tmp_path: pathlib.Path, geryon_proc) -> None:
    disks = dir_disks(tmp_path / "in", LAYOUT)
    (tmp_path / "lines.py").write_text(LINE_MAP)
    proc = geryon_proc("mapreduce", "-q", "--local", "--out", tmp_path / "out", "lines.py", "NONE", *disks,
                       cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    got = [ln for p in _part_lines(tmp_path / "out") for ln in p]
    # text format escapes the tab inside a key (`two\tTAB` reversed)
    want = [f"{line[::-1]}\t{len(line)}".replace("BAT\towt", "BAT\\towt") for line in _sequential(disks)]
    assert got == want


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
                               min_size=0, max_size=30), min_size=1, max_size=5),
       split=st.integers(min_value=1, max_value=400))
def test_map_only_equals_the_sequential_map(tmp_path_factory, files, split) -> None:
    """Random lines in random files, random split sizes: the parts, in order, are the map over
    the input in order (the hypothesis reference)."""
    root = tmp_path_factory.mktemp("maponly")
    disk = root / "d"
    disk.mkdir()
    for i, lines in enumerate(files):
        (disk / f"f{i:02d}").write_text("".join(line + "\n" for line in lines))
    job = Job(map=upper_map, partitions=0, reader="lines", split_size=split, format="json")
    result = job.run([str(disk)], out=str(root / "out"), workers=2)
    assert list(result) == [(line.upper(), len(line)) for lines in files for line in lines]
    assert len(result.parts) == result.report.map.tasks


@pytest.mark.parametrize("args, message", [
    (("-R", "0", "m.py", "m.py"), "-R 0 is a map-only job, but REDUCE is m.py: give NONE as REDUCE"),
    (("-R", "3", "m.py", "NONE"), "REDUCE is NONE, a map-only job: -R 3 has no reduce to run (drop -R)"),
    (("-R", "-1", "m.py", "NONE"), "-1 is not in the range x>=0"),
])
def test_map_only_bad_arguments_fail_in_one_line_and_write_nothing(dir_disks, tmp_path: pathlib.Path, geryon_proc, args,
                                                                    message) -> None:
    disks = dir_disks(tmp_path / "in", LAYOUT)
    (tmp_path / "m.py").write_text(LINE_MAP + "\ndef reduce(key, values):\n    return sum(values)\n")
    proc = geryon_proc("mapreduce", "-q", "--local", "--out", tmp_path / "out", *args, *disks, cwd=str(tmp_path))
    assert proc.returncode == 2   # usage errors
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_map_only_job_definitions_refused() -> None:
    with pytest.raises(JobDefinitionError, match="map-only job .* runs no reduce"):
        Job(map=upper_map, reduce=upper_map, partitions=0)
    with pytest.raises(JobDefinitionError, match="runs no combiner"):
        Job(map=upper_map, combine=upper_map, partitions=0)
    with pytest.raises(JobDefinitionError, match="partitions must be 0"):
        Job(map=upper_map, partitions=-1)


def test_grep_example_is_map_only_in_input_order(tmp_path: pathlib.Path, geryon_proc, examples) -> None:
    """examples/grep: the matching lines of d1.mbox then d0.mbox (disks in that order), in order."""
    disks = [examples / "disks" / "d1.mbox", examples / "disks" / "d0.mbox"]
    proc = geryon_proc("mapreduce", "-q", "--local", "--reader", "lines", "-D", "pattern=^(From|Subject):",
                       "--out", tmp_path / "out", examples / "grep" / "map.py", "NONE", *disks, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    got = [ln for p in _part_lines(tmp_path / "out") for ln in p]
    want = [f"{d.name}/{f.name}\t{line}" for d in disks for f in sorted(d.iterdir())
            for line in f.read_text().splitlines() if line.startswith(("From:", "Subject:"))]
    assert got == want and len(want) > 10


# -- hooks: map_init/map_final, reduce_init/reduce_final (mrjob's semantics) ---------------------

HOOKS_PY = '''
from collections import Counter

counts = Counter()

def map_init():
    counts.clear()
    yield "#map_init", 1

def map(key, value):
    counts.update(value.split())     # in-mapper combining: nothing per record

def map_final():
    yield "#map_final", 1
    yield from counts.items()

def reduce_init():
    return [("#reduce_init", 1)]

def reduce(key, values):
    return sum(values)

combine = reduce   # a sum combiner and a sum reduce, but the hooks make the reduce generic: sorted map output

def reduce_final():
    yield "#reduce_final", 1
'''

MRJOB_NAMES_PY = '''
seen = []

def mapper_init():
    seen.append("init")

def mapper(key, value):
    seen.append(value)

def mapper_final():
    return {"#lines": len(seen) - 1}

def reducer(key, values):
    return sum(values)

def reducer_final():
    return {"#done": 1}
'''


def _word_counts(disks: list[pathlib.Path]) -> dict[str, int]:
    from collections import Counter

    total: Counter = Counter()
    for d in disks:
        for f in d.iterdir():
            total.update(f.read_text().split())
    return dict(total)


def _records(parts: list[list[str]]) -> list[list[tuple[str, int]]]:
    return [[(ln.rsplit("\t", 1)[0], int(ln.rsplit("\t", 1)[1])) for ln in p] for p in parts]


def test_hooks_run_once_per_task_and_final_may_yield(dir_disks, tmp_path: pathlib.Path, geryon_proc) -> None:
    disks = dir_disks(tmp_path / "in", LAYOUT)
    (tmp_path / "hooks.py").write_text(HOOKS_PY)
    proc = geryon_proc("mapreduce", "--local", "-j", "2", "-R", "3", "--split-size", "40",
                       "--out", tmp_path / "out", "hooks.py", "hooks.py", *disks, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    maps = int(re.search(r"map: +(\d+) tasks", proc.stderr).group(1))   # the job summary
    parts = _records(_part_lines(tmp_path / "out"))
    assert len(parts) == 3
    for p in parts:   # reduce_init's pair first, reduce_final's last, in every part, once
        assert p[0] == ("#reduce_init", 1) and p[-1] == ("#reduce_final", 1)
    middle = dict(kv for p in parts for kv in p[1:-1])
    assert middle.pop("#map_init") == middle.pop("#map_final") == maps > 2   # once per map task
    assert middle == _word_counts(disks)


def test_hooks_mrjob_names_and_the_api(dir_disks, tmp_path: pathlib.Path, geryon_proc) -> None:
    disks = dir_disks(tmp_path / "in", LAYOUT)
    (tmp_path / "mr.py").write_text(MRJOB_NAMES_PY)
    proc = geryon_proc("mapreduce", "-q", "--local", "-R", "1", "--reader", "lines", "--out", tmp_path / "out",
                       "mr.py", "mr.py", *disks, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "out" / "part-00000").read_text().splitlines()
    assert lines == [f"#lines\t{len(_sequential(disks))}", "#done\t1"]
    # the same through geryon.Job, map-only: map_init's and map_final's pairs around the map's
    from geryon.mapreduce.job import load_script

    script = load_script(str(tmp_path / "mr.py"))
    job = Job(map=upper_map, map_init=script.mapper_init, map_final=script.mapper_final, partitions=0,
              reader="lines", format="json")
    result = job.run([str(d) for d in disks], out=str(tmp_path / "api"), workers=2)
    got = list(result)
    assert [kv for kv in got if kv[0] != "#lines"] == [(ln.upper(), len(ln)) for ln in _sequential(disks)]
    assert [v for k, v in got if k == "#lines"] == [0] * result.report.map.tasks   # upper_map never appends


@pytest.mark.parametrize("hook, body, message", [
    ("map_final", "raise ValueError('final boom')", "ValueError: final boom"),
    ("map_init", "return 3", "map_init must return or yield (key, value) pairs, got 3"),
    ("reduce_final", "yield 'not a pair'", "reduce_final must yield (key, value) pairs, got 'not a pair'"),
    ("reduce_init", "raise KeyError('init')", "KeyError: 'init'"),
])
def test_a_failing_hook_fails_the_job_in_one_line_and_commits_nothing(dir_disks, tmp_path: pathlib.Path, geryon_proc,
                                                                     hook, body, message) -> None:
    disks = dir_disks(tmp_path / "in", LAYOUT)
    (tmp_path / "bad.py").write_text(LINE_MAP + "\ndef reduce(key, values):\n    return sum(values)\n"
                                     f"\ndef {hook}():\n    {body}\n")
    proc = geryon_proc("mapreduce", "-q", "--local", "-R", "2", "--out", tmp_path / "out", "bad.py", "bad.py",
                       *disks, cwd=str(tmp_path))
    assert proc.returncode == 1
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"geryon: {hook.split('_')[0]} task "), first
    assert message in first
    assert not list((tmp_path / "out").glob("part-*"))


def test_hooks_are_for_python_steps() -> None:
    with pytest.raises(JobDefinitionError, match="map_init is for a Python map"):
        Job(map="cat", map_init=upper_map)
    with pytest.raises(JobDefinitionError, match="reduce_final is for a Python reduce"):
        Job(map=upper_map, reduce="uniq -c", reduce_final=upper_map)
    with pytest.raises(JobDefinitionError, match="map_final must be a Python function"):
        Job(map=upper_map, map_final="echo x")
    with pytest.raises(JobDefinitionError, match="runs no reduce_init"):
        Job(map=upper_map, partitions=0, reduce_init=upper_map)


def test_inmapper_example_counts_as_the_plain_word_count(tmp_path: pathlib.Path, geryon_proc, examples) -> None:
    disks = [examples / "disks" / "d1.mbox", examples / "disks" / "d0.mbox"]
    wc = examples / "wordcount"
    outs = []
    for mapper in ("inmapper.py", "map.py"):
        out = tmp_path / mapper
        proc = geryon_proc("mapreduce", "-q", "--local", "-R", "2", "--out", out, wc / mapper, wc / "reduce.py",
                           *disks, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        outs.append([p.read_bytes() for p in sorted(out.glob("part-*"))])
    assert outs[0] == outs[1] and sum(len(p) for p in outs[0]) > 1000


# -- the job's own partitioner: partition(key, n) -----------------------------------------------

def count_map(key, value):
    yield value, 1


def sum_reduce(key, values):
    return sum(values)


def by_length(key, n):
    return (len(key) * 7 + (ord(key[0]) if key else 0)) % n


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(st.one_of(st.sampled_from(["hot"]), st.text("abcxyz", max_size=6)), min_size=0, max_size=200),
       r=st.integers(min_value=1, max_value=6), split=st.integers(min_value=8, max_value=300))
def test_partition_function_places_every_key_as_the_reference(tmp_path_factory, keys, r, split) -> None:
    """Random keys (a hot one for skew), random R and splits: part r holds exactly the keys
    partition(key, R) == r, sorted, with the sequential reference's counts."""
    from collections import Counter

    root = tmp_path_factory.mktemp("part")
    disk = root / "d"
    disk.mkdir()
    (disk / "keys").write_text("".join(k + "\n" for k in keys))
    job = Job(map=count_map, reduce=sum_reduce, partition=by_length, partitions=r, reader="lines",
              split_size=split, format="json")
    result = job.run([str(disk)], out=str(root / "out"), workers=2)
    assert len(result.parts) == r
    from geryon.mapreduce.codec import parse_line

    seen: Counter = Counter()
    for i, path in enumerate(result.parts):
        with open(path) as f:
            got = [parse_line(line, "json") for line in f]
        assert [k for k, _ in got] == sorted(k for k, _ in got)
        assert all(by_length(k, r) == i for k, _ in got)
        seen.update(dict(got))
    assert seen == Counter(keys)


@pytest.mark.parametrize("body, message", [
    ("return -1", "partition('a', 3) returned -1, outside 0..2"),
    ("return n", "partition('a', 3) returned 3, outside 0..2"),
    ("return '1'", "partition('a', 3) returned '1', not an int in 0..2"),
    ("return 1.0", "partition('a', 3) returned 1.0, not an int in 0..2"),
    ("raise LookupError('no such key')", "partition('a', 3) raised LookupError: no such key"),
])
def test_a_bad_partition_fails_in_one_line_naming_the_key(tmp_path: pathlib.Path, geryon_proc, body,
                                                           message) -> None:
    disk = tmp_path / "in"
    disk.mkdir()
    (disk / "f.txt").write_text("a\n")
    (tmp_path / "p.py").write_text("def map(key, value):\n    yield value.strip(), 1\n\n"
                                   "def reduce(key, values):\n    return sum(values)\n\n"
                                   f"def partition(key, n):\n    {body}\n")
    proc = geryon_proc("mapreduce", "-q", "--local", "-R", "3", "--out", tmp_path / "out", "p.py", "p.py", disk,
                       cwd=str(tmp_path))
    assert proc.returncode == 1
    first = proc.stderr.splitlines()[0]
    assert first.startswith("geryon: map task m0 ") and first.endswith(message), first
    assert not list((tmp_path / "out").glob("part-*"))


def test_partition_is_for_python_maps() -> None:
    with pytest.raises(JobDefinitionError, match="partition is for a Python map"):
        Job(map="cat", partition=by_length)
    with pytest.raises(JobDefinitionError, match="map-only job .* has no partitions to choose"):
        Job(map=count_map, partitions=0, partition=by_length)


def test_byletter_example_parts_are_letter_ranges(tmp_path: pathlib.Path, geryon_proc, examples) -> None:
    disks = [examples / "disks" / "d1.mbox", examples / "disks" / "d0.mbox"]
    wc = examples / "wordcount"
    proc = geryon_proc("mapreduce", "-q", "--local", "-R", "4", "--out", tmp_path / "out", wc / "byletter.py",
                       wc / "reduce.py", *disks, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    parts = _records(_part_lines(tmp_path / "out"))
    assert len(parts) == 4 and all(parts)
    firsts = [[k[:1].lower() for k, _ in p if k[:1].isalpha() and k[:1].isascii()] for p in parts]
    for a, b in zip(firsts, firsts[1:]):   # every letter of part i comes before every letter of part i+1
        assert max(a) < min(b)
    assert dict(kv for p in parts for kv in p) == _word_counts(disks)


# -- secondary sort: sort_values = True ------------------------------------------------------------

def pair_map(key, value):
    k, _, v = value.partition(" ")
    yield k, int(v) if v.lstrip("-").isdigit() else v


def list_reduce(key, values):
    yield key, list(values)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(st.sampled_from(["a", "b", "hot", "hot", "hot"]),
                                st.one_of(st.integers(-50, 50), st.text("xyz", min_size=1, max_size=3))),
                      max_size=150),
       r=st.integers(min_value=1, max_value=4), split=st.integers(min_value=6, max_value=200))
def test_sort_values_gives_each_group_sorted_as_the_reference(tmp_path_factory, pairs, r, split) -> None:
    """Random values (ints and strs mixed: the total order), a hot key, random R and splits."""
    from geryon.mapreduce.order import total_key

    root = tmp_path_factory.mktemp("sv")
    disk = root / "d"
    disk.mkdir()
    (disk / "pairs").write_text("".join(f"{k} {v}\n" for k, v in pairs))
    job = Job(map=pair_map, reduce=list_reduce, sort_values=True, partitions=r, reader="lines",
              split_size=split, format="json")
    got = dict(job.run([str(disk)], out=str(root / "out"), workers=2))
    want: dict = {}
    for k, v in pairs:
        want.setdefault(k, []).append(v)
    assert got == {k: sorted(vs, key=total_key) for k, vs in want.items()}


def test_join_example_via_secondary_sort(tmp_path: pathlib.Path, geryon_proc, examples) -> None:
    """examples/join: users joined to their orders, in both orders of the input files (the
    user's record comes first in each group however the input is laid out)."""
    data = examples / "join" / "data"
    rows = [ln.split("\t") for f in sorted(data.iterdir()) for ln in f.read_text().splitlines()]
    users = {i: name for kind, i, name in rows if kind == "users"}
    want = sorted((users[i], item) for kind, i, item in rows if kind == "orders" and i in users)
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    for f in data.iterdir():   # the same records, orders before users in every file
        lines = f.read_text().splitlines()
        (flipped / f.name).write_text("".join(ln + "\n" for ln in sorted(lines)))
    for disk in (data, flipped):
        out = tmp_path / f"out-{disk.name}"
        proc = geryon_proc("mapreduce", "-q", "--local", "--reader", "lines", "-R", "2", "--out", out,
                           examples / "join" / "join.py", examples / "join" / "join.py", disk, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        got = sorted(tuple(ln.split("\t")) for p in _part_lines(out) for ln in p)
        assert got == want and len(want) == 5


def test_without_sort_values_the_join_loses_orders(tmp_path: pathlib.Path, geryon_proc, examples) -> None:
    """The control: the same join with sort_values off drops the orders that come before their user."""
    src = (examples / "join" / "join.py").read_text().replace("sort_values = True", "sort_values = False")
    (tmp_path / "nosort.py").write_text(src)
    out = tmp_path / "out"
    proc = geryon_proc("mapreduce", "-q", "--local", "--reader", "lines", "-R", "1", "--out", out, "nosort.py",
                       "nosort.py", examples / "join" / "data", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert len((out / "part-00000").read_text().splitlines()) < 5


@pytest.mark.parametrize("line", ["sort_values = 'yes'", "SORT_VALUES = 1"])
def test_a_bad_sort_values_fails_in_one_line_and_writes_nothing(tmp_path: pathlib.Path, geryon_proc,
                                                                 line) -> None:
    """`sort_values = 'yes'` (or 1) is refused before any task runs, not silently taken as False."""
    disk = tmp_path / "in put"
    disk.mkdir()
    (disk / "f.txt").write_text("a 1\n")
    (tmp_path / "my job.py").write_text(f"{line}\n\ndef map(key, value):\n    yield value.strip(), 1\n\n"
                                        "def reduce(key, values):\n    yield key, list(values)\n")
    proc = geryon_proc("mapreduce", "-q", "--local", "--out", tmp_path / "out", "my job.py", "my job.py", disk,
                       cwd=str(tmp_path))
    assert proc.returncode != 0
    name, value = line.split(" = ")
    assert proc.stderr.strip() == f"geryon: my job.py: {name} must be True or False, not {value}", proc.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_sort_values_job_definitions_refused() -> None:
    with pytest.raises(JobDefinitionError, match="sort_values must be True or False, not 'yes'"):
        Job(map=pair_map, reduce=list_reduce, sort_values="yes")
    with pytest.raises(JobDefinitionError, match="map-only job .* has no reduce to sort values for"):
        Job(map=pair_map, partitions=0, sort_values=True)
