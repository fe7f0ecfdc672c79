"""Multi-step jobs in local mode (mrjob's steps()/MRStep): each step's output the next one's input,
against sequential references; streaming steps; the records' types kept between Python steps; a
failed step commits nothing; bad input; records and logs naming the steps. (The same on a cluster:
tests/faults/test_faults_steps.py.)"""
from __future__ import annotations

import collections
import json
import os
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geryon import MRStep, Steps
from geryon.errors import JobDefinitionError, JobFailed
from geryon.mapreduce.job import Job
from geryon.mapreduce.jobhistory import phase_of, task_order


# -- step functions (module level: local workers fork) ------------------------------------------

def words_by_folder(key, text):
    folder = key.rsplit("/", 1)[0]
    for word in text.split():
        yield (folder, word), 1


def total(key, counts):
    return sum(counts)


def total_by_hand(key, counts):   # not the sum fast path: the generic reduce writes the records
    n = 0
    for c in counts:
        n += c
    yield key, n


def by_count(key, count):
    # the engine's own records: the key is still a (folder, word) tuple, the count an int
    if type(key) is not tuple or type(count) is not int:
        raise TypeError(f"step 2 got {key!r}: {count!r}, not a tuple and an int")
    yield count, key


def listed(count, keys):
    yield count, sorted(list(k) for k in keys)


def with_bytes(key, text):   # a map-only first step: values of several types
    for word in text.split():
        yield word, [word.encode(), len(word), None]


def check_bytes(key, value):
    data, n, nothing = value
    if type(data) is not bytes or len(data) != n or nothing is not None:
        raise TypeError(f"step 2 got {value!r}")
    yield data, n


def _nothing_in(out: pathlib.Path) -> bool:
    """A failed job's output directory: absent, or as the last step's start left it, empty."""
    return not out.exists() or list(out.iterdir()) == []


def _tree(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _reference_by_count(root: pathlib.Path, disk: str) -> list[tuple[int, list[list[str]]]]:
    """Step 1 then step 2, sequentially: count (folder, word), then the keys of each count."""
    counts: collections.Counter = collections.Counter()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        folder = f"{disk}/{path.relative_to(root)}".rsplit("/", 1)[0]   # the file reader's key: DISK/PATH
        for word in path.read_text().split():
            counts[(folder, word)] += 1
    by: dict[int, list[list[str]]] = {}
    for (folder, word), n in counts.items():
        by.setdefault(n, []).append([folder, word])
    return sorted((n, sorted(keys)) for n, keys in by.items())


WORD = st.text(alphabet="abcxyz\u00e9\u4e2d", min_size=1, max_size=4)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.dictionaries(st.sampled_from(["a/f1", "a/f2", "b b/f3", "f4", "c/d/f5"]),
                             st.lists(WORD, max_size=25).map(" ".join), min_size=1),
       r1=st.integers(1, 5), r2=st.integers(1, 4), split=st.integers(8, 200), fast=st.booleans())
def test_two_python_steps_equal_the_sequential_reference(tmp_path_factory, files, r1, r2, split, fast) -> None:
    root = tmp_path_factory.mktemp("steps")
    disk = _tree(root / "in", files)
    reduce1 = total if fast else total_by_hand
    job = Steps(MRStep(mapper=words_by_folder, combiner=total, reducer=reduce1, partitions=r1),
                MRStep(mapper=by_count, reducer=listed, partitions=r2), format="json", split_size=split)
    result = job.run([str(disk)], out=str(root / "out"), workers=2, local=True)
    assert sorted(result) == [(n, keys) for n, keys in _reference_by_count(disk, "in")]
    assert len(result.parts) == r2
    assert [s.reduce.tasks for s in result.report.steps] == [r1, r2]
    assert not list(root.glob("**/*steps*"))


def test_a_map_only_step_then_a_reduce_keep_bytes_ints_and_none(tmp_path: pathlib.Path) -> None:
    disk = _tree(tmp_path / "in", {"x": "one two three\ntwo", "y": "three three"})
    job = Job(steps=[MRStep(mapper=with_bytes), MRStep(mapper=check_bytes, reducer=total, partitions=2)],
              format="json")
    result = job.run([str(disk)], out=str(tmp_path / "out"), local=True)
    assert sorted(result) == [(b"one", 3), (b"three", 15), (b"two", 6)]
    assert result.report.steps[0].reduce.tasks == result.report.steps[0].map.tasks   # one part per map


def count_first(word, n):
    yield n, word


def test_a_total_order_last_step_reads_the_step_before(tmp_path: pathlib.Path) -> None:
    """Total order in the last step: its sampler runs the step's map over the pairs step 1 wrote."""
    import random

    rng = random.Random(5)
    words = [f"w{rng.randrange(300)}" for _ in range(3000)]
    disk = _tree(tmp_path / "in", {f"f{i}": " ".join(words[i::4]) for i in range(4)})
    job = Steps(MRStep(mapper=words_by_folder, combiner=total, reducer=total, partitions=3),
                MRStep(mapper=by_count, reducer=listed, partitions=3, total_order=True), format="json")
    result = job.run([str(disk)], out=str(tmp_path / "out"), local=True, workers=2)
    got = list(result)   # parts in order
    assert [n for n, _ in got] == sorted(n for n, _ in got)
    assert sorted(got) == _reference_by_count(disk, "in")
    assert len(result.parts) == 3 and all(p.stat().st_size for p in (tmp_path / "out").glob("part-*"))
    with pytest.raises(JobDefinitionError, match="give total_order in a step"):
        Job(steps=[MRStep(mapper=by_count)], total_order=True)


TOPWORDS_FILES = {
    "pets/cats.txt": "the cat sat on the mat the cat",
    "pets/more/dogs.txt": "a dog is a dog",
    "fruit/a.txt": "Apple pear apple, plum. pear apple",
    "top level.txt": "x y x",
}


def _topwords_reference(root: pathlib.Path, disk: str, n: int) -> dict[str, list[list]]:
    import itertools
    import re

    counts: dict[str, collections.Counter] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = f"{disk}/{path.relative_to(root)}"
        counts.setdefault(key.rsplit("/", 1)[0], collections.Counter()).update(
            re.findall(r"[a-z']+", path.read_text().lower()))
    return {folder: [[w, c] for w, c in itertools.islice(sorted(cs.items(), key=lambda wc: (-wc[1], wc[0])), n)]
            for folder, cs in counts.items()}


def test_topwords_example_two_steps_cli(tmp_path: pathlib.Path, geryon_proc, examples) -> None:
    disk = _tree(tmp_path / "my corpus", TOPWORDS_FILES)
    before = sorted(str(p) for p in disk.rglob("*"))
    work = tmp_path / "work"
    work.mkdir()
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    jobs = tmp_path / "jobs"
    proc = geryon_proc("mapreduce", "--local", "-D", "top=2", "--workdir", work, "--jobs-dir", jobs,
                       "--out", tmp_path / "out", examples / "topwords" / "topwords.py", disk, cwd=str(cwd))
    assert proc.returncode == 0, proc.stderr
    got = {}
    for part in sorted((tmp_path / "out").glob("part-*")):
        for line in part.read_text().splitlines():
            folder, _, value = line.partition("\t")
            got[folder] = json.loads(value)
    assert got == _topwords_reference(disk, "my corpus", 2)
    assert len(list((tmp_path / "out").glob("part-*"))) == 2          # step 2's R
    assert (tmp_path / "out" / "_SUCCESS").exists()
    # progress and summary name the steps; nothing of the steps is left, nothing was written into the input
    assert "step 1/2 map" in proc.stderr and "step 2/2 reduce" in proc.stderr
    assert "step 1/2 reduce: 4 tasks" in proc.stderr
    assert os.listdir(work) == []
    assert sorted(str(p) for p in disk.rglob("*")) == before
    # the record shows the steps, the logs their tasks
    listing = geryon_proc("jobs", "--jobs-dir", jobs, "--json")
    job_id = json.loads(listing.stdout)[0]["id"]
    shown = geryon_proc("jobs", "--jobs-dir", jobs, job_id)
    assert "step 1      map count_words, combine total, reduce total, R=4" in shown.stdout, shown.stdout
    assert "step 2      map to_folder, reduce top, R=2" in shown.stdout
    assert "step 1 map" in shown.stdout and "step 2 reduce 2/2 done" in shown.stdout


def test_the_example_runs_from_its_python_api(tmp_path: pathlib.Path, examples, monkeypatch) -> None:
    from geryon.mapreduce.job import load_script, steps_from_script

    disk = _tree(tmp_path / "d", TOPWORDS_FILES)
    script = str(examples / "topwords" / "topwords.py")
    load_script(script)
    job = Job(steps=steps_from_script(script), format="json")
    result = job.run([str(disk)], out=str(tmp_path / "out"), local=True)
    assert dict(result) == _topwords_reference(disk, "d", 3)


STREAMING_STEPS = r'''
from geryon import MRStep


def count(key, value):           # after a streaming step: key<TAB>value text, split at the tab
    yield value, key


def steps():
    return [
        MRStep(mapper_cmd="tr -s ' ' '\\n' | sed -e '/^$/d' -e 's/$/\t1/'",
               combiner_cmd="awk -F'\t' '{n[$1]+=$2} END {for (w in n) print w \"\t\" n[w]}'",
               reducer_cmd="awk -F'\t' '{n[$1]+=$2} END {for (w in n) print w \"\t\" n[w]}'", partitions=3),
        MRStep(mapper=count, partitions=2, reducer=None),
        MRStep(mapper_cmd="cat", reducer_cmd="sort", partitions=1),
    ]
'''


def test_streaming_steps_and_python_between_them(tmp_path: pathlib.Path, geryon_proc) -> None:
    disk = _tree(tmp_path / "in", {"a": "x y  z x\n", "b": "y x\n\nq\n"})
    (tmp_path / "st.py").write_text(STREAMING_STEPS)
    proc = geryon_proc("mapreduce", "-q", "--local", "--reader", "lines", "--out", tmp_path / "out", "st.py", disk,
                       cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "out" / "part-00000").read_text().splitlines()
    # step 1 counts words (streaming, with a streaming combiner), step 2 swaps them (Python, from
    # text), step 3 sorts (streaming)
    assert lines == sorted(["3\tx", "2\ty", "1\tz", "1\tq"])
    jobs = tmp_path / "jobs"
    again = geryon_proc("mapreduce", "--local", "--reader", "lines", "--jobs-dir", jobs, "--out", tmp_path / "again",
                        "st.py", disk, cwd=str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert "counter geryon/combine_input_records: 7" in again.stderr   # the combiner ran on step 1's 7 words


FAILING = '''
from geryon import MRStep


def words(key, value):
    for w in value.split():
        yield w, 1


def total(key, values):
    return sum(values)


def {name}(key, values):
{body}


def steps():
    return [MRStep(mapper=words, reducer=total, partitions=2), MRStep(reducer={name}, partitions=2)]
'''


@pytest.mark.parametrize("name, body, message", [
    ("not_pairs", "    yield 5", "geryon: step 2 of 2 (reduce not_pairs): reduce task r"),
    ("three", "    yield key, 1, 2", "reduce must yield (key, value) pairs, got ("),
    ("raises", "    raise ValueError('no ' + key)", "geryon: step 2 of 2 (reduce raises): reduce task r"),
])
def test_a_failed_step_commits_nothing(tmp_path: pathlib.Path, geryon_proc, name, body, message) -> None:
    disk = _tree(tmp_path / "in", {"a": "x y z x", "b": "y"})
    (tmp_path / "bad.py").write_text(FAILING.format(name=name, body=body))
    work = tmp_path / "work"
    work.mkdir()
    proc = geryon_proc("mapreduce", "-q", "--local", "--workdir", work, "--out", tmp_path / "out", "bad.py", disk,
                       cwd=str(tmp_path))
    assert proc.returncode == 1
    assert message in proc.stderr.splitlines()[0] or message in proc.stderr
    assert proc.stderr.startswith("geryon: step 2 of 2 ")
    if name != "raises":
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr.splitlines()[0]
    assert _nothing_in(tmp_path / "out")           # no part, no _SUCCESS
    assert os.listdir(work) == []                  # step 1's output removed


@pytest.mark.parametrize("text, message", [
    ("STEPS = []", "geryon: s.py: STEPS: a multi-step job needs at least one step (its steps list is empty)"),
    ("def steps():\n    return []", "geryon: s.py: steps(): a multi-step job needs at least one step"),
    ("def steps():\n    return [print]", "geryon: s.py: steps(): step 1 is not a step (MRStep or Job)"),
    ("STEPS = 'map.py'", "geryon: s.py: STEPS: steps must be a list of steps"),
    ("def steps():\n    raise KeyError('x')", "geryon: s.py: steps() raised KeyError: 'x'"),
])
def test_bad_steps_scripts_fail_in_one_line_and_write_nothing(tmp_path: pathlib.Path, geryon_proc, text,
                                                               message) -> None:
    disk = _tree(tmp_path / "in", {"a": "x"})
    (tmp_path / "s.py").write_text(text + "\n")
    proc = geryon_proc("mapreduce", "-q", "--local", "--out", tmp_path / "out", "s.py", disk, cwd=str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith(message), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_minus_r_with_a_steps_script_is_a_usage_error(tmp_path: pathlib.Path, geryon_proc, examples) -> None:
    disk = _tree(tmp_path / "in", {"a": "x"})
    proc = geryon_proc("mapreduce", "-q", "--local", "-R", "3", "--out", tmp_path / "out",
                       examples / "topwords" / "topwords.py", disk, cwd=str(tmp_path))
    assert proc.returncode == 2
    assert "lists steps, each with its own R" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_step_definitions_refused() -> None:
    with pytest.raises(JobDefinitionError, match="at least one step"):
        Job(steps=[])
    with pytest.raises(JobDefinitionError, match="at least one step"):
        Steps()
    with pytest.raises(JobDefinitionError, match="give map in a step, not beside steps"):
        Job(map=words_by_folder, steps=[MRStep(mapper=words_by_folder)])
    with pytest.raises(JobDefinitionError, match="step 2 is not a step"):
        Job(steps=[MRStep(mapper=words_by_folder), words_by_folder])
    with pytest.raises(JobDefinitionError, match="itself a multi-step job"):
        Job(steps=[Steps(MRStep(mapper=words_by_folder))])
    with pytest.raises(JobDefinitionError, match="mapper and mapper_cmd"):
        MRStep(mapper=words_by_folder, mapper_cmd="cat")
    assert MRStep(mapper=words_by_folder).map_only
    assert MRStep(reducer=total).partitions == 5
    assert MRStep(mapper=words_by_folder, partitions=2).reduce is None   # an identity reduce, R=2


def test_a_failed_step_from_the_api_names_the_step_and_leaves_nothing(tmp_path: pathlib.Path) -> None:
    disk = _tree(tmp_path / "in", {"a": "x y"})
    job = Steps(MRStep(mapper=words_by_folder, reducer=total, partitions=2),
                MRStep(mapper=check_bytes, reducer=total, partitions=1))
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(JobFailed, match=r"^step 2 of 2 \(map check_bytes, reduce total\): map task m0 .*TypeError"):
        job.run([str(disk)], out=str(tmp_path / "out"), workdir=str(work), local=True)
    assert _nothing_in(tmp_path / "out")
    assert os.listdir(work) == []


PRINTING = '''
import sys
from geryon import MRStep


def words(key, value):
    for w in value.split():
        yield w, 1


def loud(key, values):
    print("step two saw", key, file=sys.stderr)
    return sum(values)


STEPS = [MRStep(mapper=words, reducer=loud, partitions=1), MRStep(reducer=loud, partitions=1)]
'''


def test_logs_name_each_steps_tasks(tmp_path: pathlib.Path, geryon_proc) -> None:
    disk = _tree(tmp_path / "in", {"a": "x y x"})
    (tmp_path / "p.py").write_text(PRINTING)
    jobs = tmp_path / "jobs"
    proc = geryon_proc("mapreduce", "-q", "--local", "--jobs-dir", jobs, "--out", tmp_path / "out", "p.py", disk,
                       cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "s2.r0.a0: step two saw x" in proc.stderr    # echoed as it runs, named with its step
    job_id = json.loads(geryon_proc("jobs", "--jobs-dir", jobs, "--json").stdout)[0]["id"]
    logs = geryon_proc("logs", "--jobs-dir", jobs, job_id, "s2.r0")
    assert logs.returncode == 0, logs.stderr
    assert sorted(logs.stdout.splitlines()) == ["s2.r0.a0: step two saw x", "s2.r0.a0: step two saw y"]
    every = geryon_proc("logs", "--jobs-dir", jobs, job_id).stdout.splitlines()
    assert [ln.split(":")[0] for ln in every] == ["s1.r0.a0"] * 2 + ["s2.r0.a0"] * 2
    assert (tmp_path / "out" / "part-00000").read_text() == "x\t2\ny\t1\n"


def test_one_pack_carries_every_step_and_a_task_names_its_step(tmp_path: pathlib.Path, examples) -> None:
    from geryon.mapreduce import jobpack
    from geryon.mapreduce.job import load_script, steps_from_script
    from geryon.mapreduce.steps import step_jobs

    script = str(examples / "topwords" / "topwords.py")
    load_script(script)
    job = Job(steps=steps_from_script(script), params={"top": "1"}, format="json")
    steps = step_jobs(job)
    pack = jobpack.build(steps)
    where = jobpack.unpack(pack.data, str(tmp_path / "cache"), pack.digest)
    for i, step in enumerate(steps):
        loaded = jobpack.load(where, i)
        assert loaded.map.func.__name__ == step.map.func.__name__
        assert loaded.reduce.func.__name__ == step.reduce.func.__name__
        assert (loaded.partitions, loaded.format, loaded.reader, loaded.sort_values) == \
            (step.partitions, step.format, step.reader, step.sort_values)
        env = jobpack.environment(where, i)
        assert env["GERYON_PARTITIONS"] == str(step.partitions) and '"top": "1"' in env["GERYON_PARAMS"]
    assert [s.format for s in steps] == ["pairs", "json"] and steps[1].reader == "pairs"
    # a task naming a step the pack does not carry (a hostile or confused driver): refused in one line
    for bad in (2, -1, "1", True, None):
        with pytest.raises(jobpack.JobPackError, match=r"^job pack refused: the task names step .*, the pack has 2 steps$"):
            jobpack.load(where, bad)
        with pytest.raises(jobpack.JobPackError, match="the pack has 2 steps"):
            jobpack.environment(where, bad)
    single = jobpack.build(steps[0])
    one = jobpack.unpack(single.data, str(tmp_path / "cache"), single.digest)
    assert jobpack.load(one).map.func.__name__ == "count_words"
    with pytest.raises(jobpack.JobPackError, match="the pack has 1 step$"):
        jobpack.load(one, 1)


def test_step_tasks_have_their_own_phases_and_order() -> None:
    assert phase_of("s2.m0") == "step 2 map" and phase_of("s10.r3") == "step 10 reduce"
    assert phase_of("m1") == "map" and phase_of("r0") == "reduce"
    tasks = ["s2.m0", "s1.r1", "s1.m10", "s10.m0", "s1.m2", "s2.r0"]
    assert sorted(tasks, key=task_order) == ["s1.m2", "s1.m10", "s1.r1", "s2.m0", "s2.r0", "s10.m0"]
    from geryon.mapreduce.attempt import AttemptId

    assert AttemptId.parse("s2.r0.a1") == AttemptId("s2.r0", 1) and str(AttemptId("s2.r0", 1)) == "s2.r0.a1"
    for bad in ("x2.r0.a1", "s.r0.a1", "s2.q0.a1", "s2.r0"):
        with pytest.raises(ValueError):
            AttemptId.parse(bad)


def test_closing_the_drivers_loop_ends_what_still_runs_on_it(caplog) -> None:
    """A multi-step job runs one cluster driver after another in one process: each driver's loop,
    closed, must leave no task pending (one was destroyed mid-send, a heartbeat ping, and the API
    test on the cluster failed on the warning)."""
    import asyncio
    import gc
    import logging

    from geryon.mapreduce.jobnodes import Nodes

    nodes = Nodes(None, lease=1.0)
    loop = nodes.io
    fut = loop.spawn(asyncio.sleep(3600))   # a job hold, a heartbeat ping: still running at the end
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        nodes.close()
        del fut
        gc.collect()
    assert not [r for r in caplog.records if "destroyed but it is pending" in r.getMessage()]
    assert loop.loop.is_closed()


# -- a step's own partitioning and order (MRStep's key_fields, partition_fields, partition, sort_values)

STEP_OPTIONS = pathlib.Path(__file__).with_name("step_options_job.py")


def _step_options_parts(out: pathlib.Path) -> dict[int, list]:
    parts: dict[int, list] = {}
    for r, part in enumerate(sorted(p for p in out.iterdir() if p.name.startswith("part-"))):
        lines = [line.split("\t", 1) for line in part.read_text().splitlines()]
        parts[r] = [(json.loads(k), json.loads(v)) for k, v in lines]
    return parts


def test_a_steps_key_fields_partition_and_sorted_values_equal_the_reference(tmp_path: pathlib.Path,
                                                                           geryon_proc) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("step_options_job", STEP_OPTIONS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    texts = {"a b": "pear plum apple Peach\nplum avocado pear\n", "c": "apricot banana blueberry\n\nbean pea\n",
             "d/e f": "cherry cranberry apple plum kiwi\nAvocado\n"}
    disk = _tree(tmp_path / "in put", texts)
    job_dir = tmp_path / "job dir"
    job_dir.mkdir()
    (job_dir / "opts.py").write_bytes(STEP_OPTIONS.read_bytes())
    proc = geryon_proc("mapreduce", "-q", "--local", "--reader", "lines", "--split-size", "16", "-j", "3",
                       "--out", tmp_path / "out", "opts.py", disk, cwd=str(job_dir))
    assert proc.returncode == 0, proc.stderr
    got = _step_options_parts(tmp_path / "out")
    want = module.reference(texts.values())
    assert got == want and want[0] and want[1]
    # the steps as the script gives them: MRStep kept every option
    first, second = module.STEPS
    assert (first.key_fields, first.partition_fields, first.partitions) == (2, 1, 3)
    assert second.sort_values and second.partition is not None and second.partition.func is module.length_mod


def test_a_steps_partitioner_command_chooses_its_parts(tmp_path: pathlib.Path) -> None:
    disk = _tree(tmp_path / "in", {"a": "aa b ccc dddd b\n", "b": "ee fff\n"})
    words = "tr -s ' ' '\\n' | sed -e '/^$/d' -e 's/$/\t1/'"
    job = Steps(MRStep(mapper_cmd=words, reducer_cmd="uniq", partitions=2,
                       partitioner_cmd="awk '{print length($0) % 2}'"), reader="lines")
    assert job.steps[0].partition_cmd is not None and job.steps[0].partition_cmd.streaming
    job.run([str(disk)], out=str(tmp_path / "out"), workers=2)
    parts = [sorted(line.split("\t")[0] for line in p.read_text().splitlines())
             for p in sorted((tmp_path / "out").glob("part-*"))]
    assert parts == [["aa", "dddd", "ee"], ["b", "ccc", "fff"]]
    with pytest.raises(JobDefinitionError, match="partition_fields must be 1..2"):
        MRStep(mapper_cmd=words, reducer_cmd="cat", key_fields=2, partition_fields=3)
    with pytest.raises(JobDefinitionError, match="key_fields is for a streaming map"):
        MRStep(mapper=words_by_folder, reducer=total, key_fields=2)


# -- a driver killed between steps leaves nothing for long -----------------------------------------

HELD_STEPS = '''
import os
import time

import geryon
from geryon import MRStep


def words(key, line):
    for w in line.split():
        yield w, 1


def total(key, values):
    return sum(values)


def held(key, value):            # step 2 waits for the test's word (its driver is killed meanwhile)
    deadline = time.monotonic() + 300
    while not os.path.exists(geryon.param("release")) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield value, key


def listed(count, keys):
    yield count, sorted(keys)


STEPS = [MRStep(mapper=words, reducer=total, partitions=2), MRStep(mapper=held, reducer=listed, partitions=1)]
'''


def _geryon_argv(*args: object) -> list[str]:
    import sys

    return [sys.executable, "-c", "from geryon.cli import main; main()", *map(str, args)]


def _wait_for(condition, what: str, timeout: float = 120.0):
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _kill_between_steps(tmp: pathlib.Path, job_dir: pathlib.Path, disk: pathlib.Path, workdir: pathlib.Path,
                        env: dict[str, str], name: str) -> dict:
    """Start the held job, wait until step 1 committed, kill -9 its driver (and its workers): its record."""
    import signal
    import subprocess

    proc = subprocess.Popen(_geryon_argv("mapreduce", "-q", "--local", "--name", name, "--reader", "lines",
                                         "--workdir", workdir, "-D", f"release={tmp / 'never'}",
                                         "--out", tmp / f"{name}.out", "held.py", disk),
                            cwd=str(job_dir), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: list(workdir.glob(f"geryon-{name}-*-steps-*/step1/_SUCCESS")) or proc.poll() is not None,
                  "step 1 to commit")
        assert proc.poll() is None, proc.stderr.read().decode()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
    records = [json.loads(p.read_text()) for p in (tmp / "jobs").glob("*/job.json")]
    return next(r for r in records if r.get("name") == name)


def test_a_driver_killed_between_steps_leaves_nothing_after_the_next_run_or_rm(tmp_path: pathlib.Path,
                                                                               geryon_proc) -> None:
    disk = _tree(tmp_path / "in put", {"a": "x y z x\n", "b": "y x\nq\n"})
    job_dir = tmp_path / "job dir"
    job_dir.mkdir()
    (job_dir / "held.py").write_text(HELD_STEPS)
    (tmp_path / "home").mkdir()
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    env.update(HOME=str(tmp_path / "home"), GERYON_JOBS_DIR=str(tmp_path / "jobs"))
    # an earlier good job, with the same work directory
    (tmp_path / "go").write_text("")
    good = geryon_proc("mapreduce", "-q", "--local", "--name", "good", "--reader", "lines", "--workdir", workdir,
                       "-D", f"release={tmp_path / 'go'}", "--out", tmp_path / "good.out", "held.py", disk,
                       cwd=str(job_dir), env=env)
    assert good.returncode == 0, good.stderr
    good_parts = {p.name: p.read_bytes() for p in (tmp_path / "good.out").iterdir()}
    assert "part-00000" in good_parts and list(workdir.iterdir()) == []
    # killed between steps, then `geryon rm JOB`
    record = _kill_between_steps(tmp_path, job_dir, disk, workdir, env, "first")
    left = sorted(p.name for p in workdir.iterdir())
    assert any("-steps-" in n for n in left), left          # step 1's output, left by the kill
    assert [e["id"] for e in record["intermediate"]] == [f"{record['id']}-s1"]
    assert record["intermediate"][0]["dir"].startswith(str(workdir))
    rm = geryon_proc("rm", record["id"], env=env)
    assert rm.returncode == 0, rm.stderr
    assert list(workdir.iterdir()) == [], sorted(p.name for p in workdir.iterdir())
    # killed again, then any later local run in the work directory sweeps it
    _kill_between_steps(tmp_path, job_dir, disk, workdir, env, "second")
    assert any("-steps-" in p.name for p in workdir.iterdir())
    later = geryon_proc("mapreduce", "-q", "--local", "--workdir", workdir, "--out", tmp_path / "later.out",
                        "cat", "wc -l", disk, env=env)
    assert later.returncode == 0, later.stderr
    assert list(workdir.iterdir()) == [], sorted(p.name for p in workdir.iterdir())
    # the earlier job's output is untouched
    assert {p.name: p.read_bytes() for p in (tmp_path / "good.out").iterdir()} == good_parts
