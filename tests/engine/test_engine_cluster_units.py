"""Unit tests of the cluster policy's commit, with an in-memory stand-in for the nodes
given to its constructor (no attribute set by hand)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from geryon.mapreduce.clusterdriver import ClusterPolicy
from geryon.mapreduce.engine import Driver, JobReport
from geryon.mapreduce.job import Job, step_from_arg
from geryon.mapreduce.jobnodes import RemoteCpu
from geryon.mapreduce.jobpack import JobPack
from geryon.cluster.members import ClusterCpu
from geryon.mapreduce.task import TaskResult


class _Nodes:
    """Answers commits like a node's job service, and records them."""

    def __init__(self) -> None:
        self.commits: list[tuple[str, int]] = []
        self.marked: list[tuple[str, str]] = []
        self.held: list[str] = []

    def hold(self, cpus: list[ClusterCpu], job_id: str) -> None:
        self.held.extend(c.name for c in cpus)

    def forget(self, cpus: list[ClusterCpu], job_id: str) -> None:
        pass

    def close(self) -> None:
        pass

    def alive(self, cpu: ClusterCpu) -> bool:
        return True

    def post_json(self, cpu: ClusterCpu, path: str, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        self.commits.append((cpu.name, payload["partition"]))
        return {"ok": True, "disk": "c0", "part": f"wc-1/part-{payload['partition']:05d}"}

    def post_bytes(self, cpu: ClusterCpu, path: str, body: bytes, timeout: float = 30.0) -> dict[str, Any]:
        self.marked.append((cpu.name, path))
        return {"ok": True}


def test_commit_is_not_repeated_for_parts_already_committed(examples: Path) -> None:
    job = Job(map=step_from_arg(str(examples / "wordcount" / "map.py"), "map", False),
              reduce=step_from_arg(str(examples / "wordcount" / "reduce.py"), "reduce", False),
              partitions=2, name="wc")
    nodes, pack = _Nodes(), JobPack.of(b"x")
    cpus = [RemoteCpu(ClusterCpu(f"n{i}", f"http://127.0.0.1:{i + 1}", 1), nodes, pack)  # type: ignore[arg-type]
            for i in range(2)]
    policy = ClusterPolicy(nodes, None, pack=pack)  # type: ignore[arg-type]
    driver = Driver(job, cpus, "wc-1", policy=policy)
    assert policy.begin(driver, None) == "" and nodes.held == ["n0", "n1"]
    report = JobReport("wc-1", "wc", "", [], "text")
    parts = [(TaskResult(task=f"r{r}", attempt=0, ok=True, output=f"wc.part{r}.a0"), cpus[r]) for r in range(2)]
    first = policy.commit(parts, report)
    assert first == report.urls == ["geryon://127.0.0.1:1/c0/wc-1/part-00000", "geryon://127.0.0.1:2/c0/wc-1/part-00001"]
    # n1 dies after the commits: its reduce runs again on n0, and only that part is committed again
    parts[1] = (TaskResult(task="r1", attempt=1, ok=True, output="wc.part1.a1"), cpus[0])
    second = policy.commit(parts, report)
    assert nodes.commits == [("n0", 0), ("n1", 1), ("n0", 1)]
    assert second == ["geryon://127.0.0.1:1/c0/wc-1/part-00000", "geryon://127.0.0.1:1/c0/wc-1/part-00001"]
    assert sorted(nodes.marked) == [("n0", "/v1/jobs/wc-1/success")] * 2 + [("n1", "/v1/jobs/wc-1/success")]
