"""Unit tests of the cluster driver's bookkeeping, with an in-memory stand-in for the nodes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from geryon.mapreduce.clusterdriver import ClusterDriver, _Task
from geryon.mapreduce.engine import JobReport
from geryon.mapreduce.job import Job, step_from_arg
from geryon.mapreduce.jobpack import JobPack
from geryon.cluster.members import ClusterCpu
from geryon.mapreduce.task import TaskResult


class _Nodes:
    """Answers commits like a node's job service, and records them."""

    def __init__(self) -> None:
        self.commits: list[tuple[str, int]] = []
        self.marked: list[tuple[str, str]] = []

    def post_json(self, cpu: ClusterCpu, path: str, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        self.commits.append((cpu.name, payload["partition"]))
        return {"ok": True, "disk": "c0", "part": f"wc-1/part-{payload['partition']:05d}"}

    def post_bytes(self, cpu: ClusterCpu, path: str, body: bytes, timeout: float = 30.0) -> dict[str, Any]:
        self.marked.append((cpu.name, path))
        return {"ok": True}


def _driver(examples: Path) -> ClusterDriver:
    job = Job(map=step_from_arg(str(examples / "wordcount" / "map.py"), "map", False),
              reduce=step_from_arg(str(examples / "wordcount" / "reduce.py"), "reduce", False),
              partitions=2, name="wc")
    cpus = [ClusterCpu("n0", "http://127.0.0.1:1", 1), ClusterCpu("n1", "http://127.0.0.1:2", 1)]
    d = ClusterDriver(job, cpus, "wc-1", None, pack=JobPack.of(b"x"))
    d.nodes = _Nodes()  # type: ignore[assignment]
    d.maps = []
    d.committed, d.record = {}, None
    d.reduce_done = {r: (TaskResult(task=f"r{r}", attempt=0, ok=True, output=f"wc.part{r}.a0"), cpus[r])
                     for r in range(2)}
    d._report = JobReport("wc-1", "wc", "", [], "text")
    d.map_done, d.running, d.pending, d.dead = {}, {}, [], set()
    d.tasks = {("r", r): _Task(("r", r)) for r in range(2)}
    return d


def test_commit_is_not_repeated_for_parts_already_committed(examples: Path) -> None:
    d = _driver(examples)
    first = d._commit_parts()
    assert [w for _, _, w in first] == ["geryon://127.0.0.1:1/c0/wc-1/part-00000",
                                         "geryon://127.0.0.1:2/c0/wc-1/part-00001"]
    # n1 dies after the commits: its part is lost and its reduce goes back to the queue...
    d._declare_dead(d.cpus[1])
    assert 1 not in d.reduce_done and 1 not in d.committed and d.pending == [("r", 1)]
    # ... and runs again on n0: only that part is committed again
    d.reduce_done[1] = (TaskResult(task="r1", attempt=1, ok=True, output="wc.part1.a1"), d.cpus[0])
    second = d._commit_parts()
    assert d.nodes.commits == [("n0", 0), ("n1", 1), ("n0", 1)]  # type: ignore[attr-defined]
    assert [w for _, _, w in second] == ["geryon://127.0.0.1:1/c0/wc-1/part-00000",
                                          "geryon://127.0.0.1:1/c0/wc-1/part-00001"]
