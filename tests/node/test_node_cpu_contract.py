"""The `Cpu` contract (geryon.mapreduce.cpu's docstring), one test class run on every implementation:
`LocalCpu` (worker processes on this machine) and `RemoteCpu` (a real node daemon's job
service). A new executor (a Dask cpu) adds itself to `IMPLEMENTATIONS`.
"""
from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from geryon.mapreduce.attempt import FailureKind, classify
from geryon.mapreduce.clusterdriver import ClusterPolicy
from geryon.mapreduce.cpu import Cpu, LocalCpu
from geryon.mapreduce.engine import Driver
from geryon.mapreduce.job import Job, step_from_arg
from geryon.mapreduce.jobnodes import Nodes, RemoteCpu
from geryon.mapreduce.jobpack import build
from geryon.cluster.members import ClusterCpu
from geryon.mapreduce.policy import LocalPolicy, Policy
from geryon.records.split import FileRange, Split
from geryon.mapreduce.task import MapTask, ReduceTask, TaskResult
from node_helpers import Cluster

WAIT = 120.0
"""Seconds an attempt may take on a loaded machine."""

MAP = '''import os, signal

def map(key, value):
    if "die" in value:
        os.kill(os.getpid(), signal.SIGKILL)
    if "boom" in value:
        raise ValueError("boom at " + key)
    os.write(2, ("saw " + value.strip() + "\\n").encode())   # fd 2: pytest replaces sys.stderr
    return [(w, 1) for w in value.split()]
'''
REDUCE = "def reduce(key, values):\n    return sum(values)\n"
FILES = {"words.txt": b"one two two\nthree three three\n", "boom.txt": b"boom\n", "die.txt": b"die\n"}


@dataclass
class Impl:
    """A cpu under test, and how its attempts name their inputs."""

    cpu: Cpu
    root: str           # where the input files are, as a map task names it
    workdir: str        # where map outputs go ("" on a node: its own)
    policy: Policy      # its map outputs located (`map_output`) and reduces made (`reduce_attempt`)
    job_id: str


def _job(tmp_path: Path) -> Job:
    (tmp_path / "m.py").write_text(MAP)
    (tmp_path / "r.py").write_text(REDUCE)
    return Job(map=step_from_arg(str(tmp_path / "m.py"), "map", False),
               reduce=step_from_arg(str(tmp_path / "r.py"), "reduce", False), partitions=2, name="contract",
               reader="lines")


def _local(tmp_path: Path, secret_file: Path) -> Iterator[Impl]:
    disk = tmp_path / "disk"
    disk.mkdir()
    for name, data in FILES.items():
        (disk / name).write_bytes(data)
    job = _job(tmp_path)
    cpu = LocalCpu("contract-1", job, slots=2)   # 2: a process per attempt, which may die
    policy = LocalPolicy(str(tmp_path))
    try:
        policy.begin(Driver(job, [cpu], "contract-1", policy=policy), str(tmp_path / "out"))
        yield Impl(cpu, str(disk), policy.work, policy, "contract-1")
    finally:
        policy.end()
        cpu.close()


def _remote(tmp_path: Path, secret_file: Path) -> Iterator[Impl]:
    from registry.auth import load_secret

    cluster = Cluster(tmp_path, secret_file)
    nodes = Nodes(load_secret(secret_file), lease=5.0)
    try:
        node = cluster.start_node("n0", register=False)
        for name, data in FILES.items():
            (node.chunks["c0"] / name).write_bytes(data)
        job = _job(tmp_path)
        cpu = RemoteCpu(ClusterCpu("n0", node.url, 2), nodes, build(job))
        policy = ClusterPolicy(nodes, None)
        policy.begin(Driver(job, [cpu], "contract-1", policy=policy), None)   # holds the job on the node
        yield Impl(cpu, node.chunk_url("c0"), "", policy, "contract-1")
    finally:
        nodes.close()
        cluster.stop()


IMPLEMENTATIONS: dict[str, Callable[[Path, Path], Iterator[Impl]]] = {"local": _local, "remote": _remote}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def impl(request: pytest.FixtureRequest, tmp_path: Path, secret_file: Path) -> Iterator[Impl]:
    yield from IMPLEMENTATIONS[request.param](tmp_path, secret_file)


def _map(impl: Impl, name: str, index: int = 0, attempt: int = 0) -> MapTask:
    split = Split("in", (FileRange(f"/{name}", 0, len(FILES[name])),))
    return MapTask(index, attempt, split, impl.root, impl.workdir)


class _Log:
    def __init__(self) -> None:
        self.data = b""
        self.lock = threading.Lock()

    def __call__(self, data: bytes) -> None:
        with self.lock:
            self.data += data


def _printed(result: TaskResult, log: _Log) -> str:
    return log.data.decode(errors="replace") + result.log


class TestCpuContract:
    def test_it_names_itself_and_its_slots(self, impl: Impl) -> None:
        assert isinstance(impl.cpu.name, str) and impl.cpu.name
        assert impl.cpu.slots == 2

    def test_a_map_attempt_gives_its_result_and_what_it_printed(self, impl: Impl) -> None:
        log = _Log()
        fut = impl.cpu.submit(impl.job_id, _map(impl, "words.txt", 3, 1), log)
        assert isinstance(fut, cf.Future)
        result = fut.result(WAIT)
        assert result.ok, result.error
        assert (result.task, result.attempt, result.attempt_id.is_map) == ("m3", 1, True)
        assert result.records_in == 2 and result.records_out == 6 and len(result.segments) == 2
        assert "saw one two two" in _printed(result, log)

    def test_a_reduce_reads_map_outputs_where_the_policy_says(self, impl: Impl) -> None:
        first = impl.cpu.submit(impl.job_id, _map(impl, "words.txt"), _Log()).result(WAIT)
        assert first.ok, first.error
        where = impl.policy.map_output(first, impl.cpu)
        counts: dict[str, int] = {}
        for r in range(2):
            task = impl.policy.reduce_attempt(r, 0, ((where, first.segments[r]),))
            assert isinstance(task, ReduceTask)
            result = impl.cpu.submit(impl.job_id, task, _Log()).result(WAIT)
            assert result.ok and result.output, result.error
            counts[str(r)] = result.records_out
        assert sum(counts.values()) == 3     # one, two, three: each key in one partition

    def test_the_jobs_own_failure_is_a_result_of_kind_user(self, impl: Impl) -> None:
        result = impl.cpu.submit(impl.job_id, _map(impl, "boom.txt", 1), _Log()).result(WAIT)
        assert not result.ok and result.error_kind == FailureKind.USER
        assert "m1" in result.error and "boom at" in result.error, result.error

    def test_a_worker_killed_is_a_failure_another_attempt_may_cure(self, impl: Impl) -> None:
        fut = impl.cpu.submit(impl.job_id, _map(impl, "die.txt", 2), _Log())
        try:
            result = fut.result(WAIT)
        except Exception as exc:  # lost: the driver classifies what the future raised
            kind = classify(exc, otherwise=FailureKind.SYSTEM)
        else:
            assert not result.ok
            kind = FailureKind(result.error_kind)
        assert kind in (FailureKind.SYSTEM, FailureKind.LOST), kind
        # the cpu still works
        again = impl.cpu.submit(impl.job_id, _map(impl, "words.txt", 2, 1), _Log()).result(WAIT)
        assert again.ok, again.error

    def test_slots_run_at_once_and_submit_does_not_wait(self, impl: Impl) -> None:
        futs = [impl.cpu.submit(impl.job_id, _map(impl, "words.txt", i), _Log()) for i in range(impl.cpu.slots)]
        results = [f.result(WAIT) for f in futs]
        assert all(r.ok for r in results) and [r.task for r in results] == ["m0", "m1"]
        impl.cpu.abort()   # nothing running: stopping is harmless
