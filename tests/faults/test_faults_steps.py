"""Multi-step jobs on a real cluster (registry and three node daemons as processes), from the CLI and
the Python API: the output equals local mode's and the sequential reference; the steps' outputs stay
on the nodes' output disks between steps and are gone after the job; a failed step commits nothing.
(Local-mode detail and bad input: tests/engine/test_engine_steps.py.)"""
from __future__ import annotations

import collections
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.faults.fault_helpers import GERYON, FaultCluster, job_record, mapreduce, parts

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def _packs(c: FaultCluster) -> set[str]:
    """The job packs the nodes hold (their pack caches, `work-<node>/packs/<sha256>`)."""
    return {p.name for name in c.nodes for p in (c.tmp / f"work-{name}" / "packs").glob("*")
            if re.fullmatch(r"[0-9a-f]{64}", p.name)}


def _step_outputs_left(c: FaultCluster) -> list[str]:
    """Directories of intermediate step outputs (`JOB-s<i>`) on any node's output disk."""
    return sorted(str(p) for node in c.nodes.values() for p in Path(node.chunks["c0"]).iterdir()
                  if re.search(r"-s\d+$", p.name))


def _reference(c: FaultCluster, n: int) -> dict[str, list[list]]:
    """examples/topwords, sequentially: the top n words of each directory (here each disk)."""
    counts: dict[str, collections.Counter] = {}
    for disk, files in c.corpus.items():
        for rel, data in files.items():
            folder = f"{disk}/{rel}".rsplit("/", 1)[0]
            counts.setdefault(folder, collections.Counter()).update(re.findall(r"[a-z']+", data.decode().lower()))
    return {folder: [[w, k] for w, k in itertools.islice(sorted(cs.items(), key=lambda wc: (-wc[1], wc[0])), n)]
            for folder, cs in counts.items()}


STREAMING_STEPS = r'''
from geryon import MRStep


def swap(key, value):            # after a streaming step: key<TAB>value text, split at the tab
    yield int(value), key


def steps():
    return [
        MRStep(mapper_cmd="tr -s ' ' '\\n' | sed -e '/^$/d' -e 's/$/\t1/'",
               reducer_cmd="awk -F'\t' '{n[$1]+=$2} END {for (w in n) print w \"\t\" n[w]}'", partitions=3),
        MRStep(mapper=swap, partitions=2, reducer=None),
        MRStep(mapper_cmd="cat", reducer_cmd="LC_ALL=C sort -k1,1n -k2", partitions=1),
    ]
'''


def test_topwords_steps_on_the_cluster_cli_and_api(fault_cluster: FaultCluster) -> None:
    from geryon.mapreduce.job import Job, load_script, steps_from_script
    from registry.auth import load_secret
    from registry.client import RegistryClient

    c = fault_cluster
    c.reference()   # the local copies of the disks and their ndb file
    job_dir = c.tmp / "top words"
    job_dir.mkdir()
    shutil.copy(EXAMPLES / "topwords" / "topwords.py", job_dir / "topwords.py")
    runs = {}
    packs_before = _packs(c)
    for mode in ("cluster", "local"):
        proc = mapreduce(c, job_dir, "top", mode, "-D", "top=4", "--split-size", "32K", "topwords.py")
        assert proc.returncode == 0, proc.stderr
        runs[mode] = parts(c.tmp / f"top-{mode}")
        if mode == "cluster":
            record = job_record(c.jobs_dir)
            assert _step_outputs_left(c) == []
            assert _packs(c) - packs_before == {record["pack"]}   # one pack carries both steps
    assert runs["cluster"] == runs["local"] and len(runs["cluster"]) == 2
    got = {}
    for part in runs["cluster"]:
        for line in part.decode().splitlines():
            folder, _, value = line.partition("\t")
            got[folder] = json.loads(value)
    assert got == _reference(c, 4)
    assert record["mode"] == "cluster" and len(record["steps"]) == 2
    tasks = {a["task"] for a in record["attempts"]}
    assert {"s1.r0", "s1.r3", "s2.r0", "s2.r1"} <= tasks and any(t.startswith("s2.m") for t in tasks)
    # the Python API, the same steps from the script
    script = str(job_dir / "topwords.py")
    load_script(script)
    job = Job(steps=steps_from_script(script), name="api", format="json", split_size=32 << 10, params={"top": "2"})
    secret = load_secret(c.secret_file)
    with RegistryClient(c.registry_url, secret=secret, owner="test") as registry:
        result = job.run(sorted(c.corpus), registry=registry, secret=secret)
        pairs = dict(result)
    assert pairs == _reference(c, 2)
    assert [s.reduce.tasks for s in result.report.steps] == [4, 2]
    assert all(u.startswith("geryon://") for u in result.report.urls)
    assert _step_outputs_left(c) == []
    # streaming steps with a Python step between them, on the cluster and here
    (job_dir / "st.py").write_text(STREAMING_STEPS)
    runs = {}
    for mode in ("cluster", "local"):
        proc = mapreduce(c, job_dir, "st", mode, "--reader", "lines", "st.py")
        assert proc.returncode == 0, proc.stderr
        runs[mode] = parts(c.tmp / f"st-{mode}")
    assert runs["cluster"] == runs["local"] and len(runs["cluster"]) == 1
    counts = collections.Counter(w for files in c.corpus.values() for data in files.values()
                                 for w in data.decode().split())
    want = sorted((n, w) for w, n in counts.items())
    got = [ln.split("\t") for ln in runs["cluster"][0].decode().splitlines()]
    assert [(int(n), w) for n, w in got] == want
    assert _step_outputs_left(c) == []


FAILING = '''
from geryon import MRStep


def words(key, value):
    for w in value.split():
        yield w, 1


def total(key, values):
    return sum(values)


def broken(key, values):
    yield 5


def steps():
    return [MRStep(mapper=words, combiner=total, reducer=total, partitions=3),
            MRStep(reducer=broken, partitions=2)]
'''


def test_a_failed_step_on_the_cluster_commits_nothing(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    job_dir = c.tmp / "bad job"
    job_dir.mkdir()
    (job_dir / "bad.py").write_text(FAILING)
    proc = mapreduce(c, job_dir, "bad", "cluster", "bad.py")
    assert proc.returncode == 1
    first = proc.stderr.splitlines()[0]
    assert first.startswith("geryon: step 2 of 2 (reduce broken): reduce task r"), proc.stderr
    assert "reduce must yield (key, value) pairs, got 5" in first
    out = c.tmp / "bad-cluster"
    assert not out.exists() or list(out.iterdir()) == []
    assert _step_outputs_left(c) == []                       # step 1's parts removed from the nodes
    record = job_record(c.jobs_dir)
    assert record["state"] == "failed"
    job_dirs = [p for node in c.nodes.values() for p in Path(node.chunks["c0"]).iterdir() if p.name == record["id"]]
    assert all(not list(d.glob("part-*")) for d in job_dirs)   # step 2 committed no part anywhere


KEYS_STEPS_PY = '''
import random
import zlib

import geryon
from geryon import MRStep


def keys_of(line, seed):
    """Pairs drawn from a line by `seed`: ((prefix, bucket), weight)."""
    out = []
    for word in line.split():
        r = random.Random(zlib.crc32(f"{seed}:{word}".encode()))
        out.append(((word[:r.randrange(1, 4)], r.randrange(4)), r.randrange(1, 5)))
    return out


def drawn(key, line):
    return keys_of(line, int(geryon.param("seed")))


def total(key, values):
    return sum(values)


def by_hand(key, values):
    yield key, sum(values)


def to_bucket(key, weight):
    prefix, bucket = key
    yield bucket, [prefix, weight]


def listed(bucket, items):
    yield bucket, sorted(items)


def steps():
    r1, r2 = int(geryon.param("r1")), int(geryon.param("r2"))
    reduce = total if geryon.param("fast") == "1" else by_hand
    return [MRStep(mapper=drawn, combiner=total, reducer=reduce, partitions=r1),
            MRStep(mapper=to_bucket, reducer=listed, partitions=r2, total_order=geryon.param("order") == "1")]
'''


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 1000), r1=st.integers(1, 5), r2=st.integers(1, 3), fast=st.booleans(),
       order=st.booleans())
@example(seed=7, r1=3, r2=3, fast=False, order=True)
def test_steps_api_on_the_cluster_equal_the_sequential_reference(fault_cluster: FaultCluster, seed: int, r1: int,
                                                                 r2: int, fast: bool, order: bool) -> None:
    import os

    from geryon.mapreduce.job import Job, load_script, steps_from_script
    from registry.auth import load_secret
    from registry.client import RegistryClient

    c = fault_cluster
    job_dir = c.tmp / "keys steps"
    job_dir.mkdir(exist_ok=True)
    script = str(job_dir / f"keys{seed}_{r1}{r2}{int(fast)}{int(order)}.py")
    Path(script).write_text(KEYS_STEPS_PY)
    params = {"seed": str(seed), "r1": str(r1), "r2": str(r2), "fast": "1" if fast else "0",
              "order": "1" if order else "0"}
    os.environ["GERYON_PARAMS"] = json.dumps(params)   # steps() reads them as it loads, as the CLI arranges
    try:
        module = load_script(script)
        steps = steps_from_script(script)
    finally:
        del os.environ["GERYON_PARAMS"]
    sums: collections.Counter = collections.Counter()
    for disk in sorted(c.corpus):
        for data in c.corpus[disk].values():
            for line in data.decode().splitlines():
                for key, weight in module.keys_of(line, seed):
                    sums[key] += weight
    want: dict[int, list] = {}
    for (prefix, bucket), weight in sums.items():
        want.setdefault(bucket, []).append([prefix, weight])
    job = Job(steps=steps, name=f"keys{seed}", format="json", reader="lines", split_size=96 << 10, params=params)
    secret = load_secret(c.secret_file)
    with RegistryClient(c.registry_url, secret=secret, owner="test") as registry:
        result = job.run(sorted(c.corpus), registry=registry, secret=secret)
        pairs = list(result)   # parts in order
    got = dict(pairs)
    assert got == {b: sorted(items) for b, items in want.items()}
    if order:   # a total-order last step: its sampling tasks ran the step's own map on the nodes
        assert [b for b, _ in pairs] == sorted(want)
    assert [s.reduce.tasks for s in result.report.steps] == [r1, r2]
    assert _step_outputs_left(c) == []


def test_a_steps_own_key_fields_partition_and_sorted_values_on_the_cluster(fault_cluster: FaultCluster) -> None:
    """MRStep's key_fields/partition_fields (streaming step) and partition/sort_values (Python step):
    the cluster's parts equal local mode's bytes and the sequential reference."""
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "engine" / "step_options_job.py"
    spec = importlib.util.spec_from_file_location("step_options_job", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = fault_cluster
    c.reference()
    job_dir = c.tmp / "options job"
    job_dir.mkdir()
    shutil.copy(script, job_dir / "options.py")
    runs = {}
    for mode in ("cluster", "local"):
        proc = mapreduce(c, job_dir, "opts", mode, "--reader", "lines", "--split-size", "8K", "options.py")
        assert proc.returncode == 0, proc.stderr
        runs[mode] = parts(c.tmp / f"opts-{mode}")
    assert runs["cluster"] == runs["local"] and len(runs["cluster"]) == 2
    got = {r: [(json.loads(k), json.loads(v)) for k, v in (ln.split("\t", 1) for ln in part.decode().splitlines())]
           for r, part in enumerate(runs["cluster"])}
    assert got == module.reference(data.decode() for files in c.corpus.values() for data in files.values())
    assert _step_outputs_left(c) == []


# -- a driver killed between steps: the nodes remove what it held, `geryon rm` too -----------------

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


STEPS = [MRStep(mapper=words, combiner=total, reducer=total, partitions=3),
         MRStep(mapper=held, reducer=listed, partitions=2)]
'''


def _left_of(c: FaultCluster, job_id: str) -> list[str]:
    """Everything of `job_id` (and its steps, `JOB-s<i>`) on any node: output disks, work directories."""
    out = []
    for name, node in c.nodes.items():
        work = c.tmp / f"work-{name}"
        places = [Path(node.chunks["c0"]), work / "output", work / "attempts", work / "held-outputs"]
        out += [str(p) for d in places if d.is_dir() for p in d.iterdir() if job_id in p.name]
    return sorted(out)


def _node_tree(c: FaultCluster, job_id: str) -> dict[str, bytes]:
    """The committed output of `job_id` on the nodes, file by file."""
    return {f"{n}/{p.name}": p.read_bytes() for n, node in c.nodes.items()
            for p in sorted((Path(node.chunks["c0"]) / job_id).glob("*"))}


def _start_held(c: FaultCluster, job_dir: Path, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*GERYON, "mapreduce", "-q", "--name", name, "--reader", "lines", "--lease", "2",
                             "-D", f"release={c.tmp / 'never'}", "--out", str(c.tmp / f"{name}.out"), "held.py",
                             *sorted(c.corpus)], cwd=job_dir, env=c.job_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _step1_committed(c: FaultCluster) -> list[Path]:
    return [p.parent for node in c.nodes.values() for p in Path(node.chunks["c0"]).glob("*-s1/_SUCCESS")]


def _kill_driver(proc: subprocess.Popen[bytes]) -> None:
    import os
    import signal

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _held_cluster(tmp_path: Path, secret_file: Path, corpus: dict, grace: str) -> FaultCluster:
    c = FaultCluster(tmp_path, secret_file, corpus)
    c.start(node_extra=("--step-output-grace", grace))
    job_dir = c.tmp / "held job"
    job_dir.mkdir()
    (job_dir / "held.py").write_text(HELD_STEPS)
    shutil.copy(EXAMPLES / "topwords" / "topwords.py", job_dir / "topwords.py")
    return c


def test_a_driver_killed_between_steps_leaves_nothing_on_the_nodes(tmp_path: Path, secret_file: Path,
                                                                   corpus: dict) -> None:
    from tests.faults.fault_helpers import kill, wait_until

    c = _held_cluster(tmp_path, secret_file, corpus, "1")
    try:
        job_dir = c.tmp / "held job"
        # an earlier good job, its output kept on the nodes and copied here
        good = mapreduce(c, job_dir, "good", "cluster", "-D", "top=3", "topwords.py")
        assert good.returncode == 0, good.stderr
        good_id = job_record(c.jobs_dir)["id"]
        good_nodes, good_out = _node_tree(c, good_id), parts(c.tmp / "good-cluster")
        assert good_nodes and good_out
        # killed between steps: every node (the ones the driver held) removes step 1's parts
        proc = _start_held(c, job_dir, "held")
        wait_until(lambda: _step1_committed(c) or proc.poll() is not None, 120)
        assert proc.poll() is None, "the held job ended by itself"
        (s1,) = {p.name for p in _step1_committed(c)}
        job_id = s1[:-len("-s1")]
        assert [e["id"] for e in job_record(c.jobs_dir)["intermediate"]] == [s1]
        _kill_driver(proc)
        wait_until(lambda: not _left_of(c, job_id), 60)
        # killed again, and a node killed with it: restarted, that node removes them too
        proc = _start_held(c, job_dir, "held2")
        wait_until(lambda: [p for p in _step1_committed(c) if job_id not in p.name] or proc.poll() is not None, 120)
        assert proc.poll() is None, "the held job ended by itself"
        where = sorted(p for p in _step1_committed(c) if job_id not in p.name)[0]
        job2 = where.name[:-len("-s1")]
        holder = next(n for n, node in c.nodes.items() if Path(node.chunks["c0"]) == where.parent)
        kill(c.node_pids(holder))
        c.nodes[holder].proc.expected_exit = True
        _kill_driver(proc)
        assert (where / "_SUCCESS").exists()     # the node died holding it
        c.restart_node(holder)
        wait_until(lambda: not _left_of(c, job2), 60)
        # the earlier job's output is untouched, on the nodes and here
        assert _node_tree(c, good_id) == good_nodes and parts(c.tmp / "good-cluster") == good_out
    finally:
        c.stop()


def test_geryon_rm_removes_the_step_outputs_a_killed_driver_left(tmp_path: Path, secret_file: Path,
                                                                corpus: dict) -> None:
    from tests.faults.fault_helpers import wait_until

    c = _held_cluster(tmp_path, secret_file, corpus, "3600")   # the nodes would wait an hour
    try:
        job_dir = c.tmp / "held job"
        proc = _start_held(c, job_dir, "held")
        wait_until(lambda: _step1_committed(c) or proc.poll() is not None, 120)
        assert proc.poll() is None, "the held job ended by itself"
        (s1,) = {p.name for p in _step1_committed(c)}
        job_id = s1[:-len("-s1")]
        _kill_driver(proc)
        record = job_record(c.jobs_dir)
        assert record["id"] == job_id and record["state"] == "lost"
        assert sorted(record["intermediate"][0]["nodes"]) == sorted(n.url.split("://", 1)[1] for n in c.nodes.values())
        wait_until(lambda: not [p for p in _left_of(c, job_id) if "attempts" in p or ".geryon-tmp-" in p], 60)
        assert _step1_committed(c)                # still there: the nodes' grace has not run out
        rm = subprocess.run([*GERYON, "rm", job_id], capture_output=True, text=True, env=c.job_env(), timeout=60)
        assert rm.returncode == 0, rm.stderr
        assert _left_of(c, job_id) == []
    finally:
        c.stop()
