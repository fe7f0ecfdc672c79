"""Planning a job when copies of its disks fail or are not announced yet (random-fault seeds 10, 12).

A registry that just restarted holds only the entries re-announced so far: a disk whose
master is gone may have its replica announced a moment after the job looked. And a node
may die between the driver listing its disk and planning the splits from it. Both must
plan from another copy, and the output must be byte-identical to local mode.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.faults.fault_helpers import FaultCluster, assert_same_output, job_events, kill, wait_job
from tests.node.node_helpers import wait_until


def _live_chunks(c: FaultCluster) -> set[str]:
    client = c.client()
    try:
        return {s.name for s in client.find({"chunk": "*"}) if s.get("addr")}
    finally:
        client.close()


def test_a_replica_announced_after_the_job_looked_is_planned_from(
        tmp_path: Path, secret_file: Path, corpus: dict[str, dict[str, bytes]]) -> None:
    c = FaultCluster(tmp_path, secret_file, corpus)
    try:
        c.start()
        reference = c.reference()
        first = sorted(corpus)[0]
        # its master (n0!in0) is deleted; its replica's node (n1) is down when the job starts
        c.nodes["n1"].proc.expected_exit = True
        kill(c.node_pids("n1"))
        wait_until(lambda: f"{first}.r" not in _live_chunks(c), 20)
        shutil.rmtree(c.nodes["n0"].chunks["in0"])
        job = c.start_job(tmp_path / "out")

        def looked() -> bool:
            try:
                return "unreadable" in job_events(c.jobs_dir) or job.poll() is not None
            except (AssertionError, OSError, ValueError):
                return job.poll() is not None
        wait_until(looked, 60)
        c.restart_node("n1")                    # the replica comes back (as after a registry restart)
        code, _, err = wait_job(job, timeout=180)
        assert code == 0, err[-3000:]
        assert_same_output(tmp_path / "out", reference, corpus)
        assert f"{first}: " in job_events(c.jobs_dir)
    finally:
        c.stop()


def _words(key: Any, value: Any) -> Any:
    for word in value.split():
        yield word, 1


def _total(key: Any, values: Any) -> Any:
    yield key, sum(values)


def test_a_copy_that_fails_while_the_splits_are_planned_is_left_for_the_next(monkeypatch: Any) -> None:
    """Unit test of the driver's planning: the first copy lists once, then its node dies."""
    import fs.memoryfs

    import geryon
    from geryon.mapreduce import clusterdriver as cluster_mod
    from geryon.disks import remote as remotefs
    from geryon.cluster.members import ClusterCpu, ClusterDisk

    class Copy(fs.memoryfs.MemoryFS):
        """A disk copy on node `node`; the one on h:1 answers one listing, then nothing."""

        def __init__(self, node: str, chunk: str, secret: Any, timeout: float = 0) -> None:
            super().__init__()
            self.writebytes("a.txt", b"one two\n")
            self.writebytes("b.txt", b"three\n")
            self.mortal = node.endswith(":1")
            self.dead = False

        def _check(self) -> None:
            if self.dead:
                raise remotefs.NodeUnavailable("node http://h:1: Connection refused")

        def listdir(self, path: str) -> list[str]:
            self._check()
            self.dead = self.mortal
            return super().listdir(path)

        def scandir(self, path: str, namespaces: Any = None, page: Any = None) -> Any:
            self._check()
            return super().scandir(path, namespaces, page)

        def getinfo(self, path: str, namespaces: Any = None) -> Any:
            self._check()
            return super().getinfo(path, namespaces)

    monkeypatch.setattr(remotefs, "RemoteFS", Copy)
    job = geryon.Job(map=_words, reduce=_total, partitions=2)
    cpus = [ClusterCpu("h", "http://h:9", 2, "Linux", "x86_64", 0.0)]
    driver = cluster_mod.ClusterDriver(job, cpus, "plan-test", None, pack=object())  # type: ignore[arg-type]
    driver._prepare([ClusterDisk("d", ("geryon://h:1/c", "geryon://h:2/c"))])
    assert driver.locations["d"] == ("geryon://h:2/c",)
    assert {m.root for m in driver.maps} == {"geryon://h:2/c"}
    assert sum(m.split.size for m in driver.maps) == len(b"one two\n") + len(b"three\n")


def test_a_damaged_copy_whose_replica_was_announced_after_the_plan_is_read_from_it(
        tmp_path: Path, secret_file: Path, corpus: dict[str, dict[str, bytes]]) -> None:
    """Random-fault seed 11: the registry restarted just before the job looked, so the plan
    knew only the (corrupted) master; its replica comes back once a map has failed on it."""
    import signal

    from tests.faults.fault_helpers import attempts

    c = FaultCluster(tmp_path, secret_file, corpus)
    try:
        c.start()
        reference = c.reference()
        first = sorted(corpus)[0]
        victim = c.nodes["n0"].chunks["in0"] / "f01.txt"
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x20
        victim.write_bytes(bytes(data))
        # n1 (the replica's node) is paused while the registry restarts: it cannot re-announce
        kill(c.node_pids("n1"), signal.SIGSTOP)
        try:
            registry = c.procs[0]
            port = int(c.registry_url.rsplit(":", 1)[1])
            registry.expected_exit = True
            registry.stop(signal.SIGKILL)
            c.procs[0] = c.start_registry(port=port)
            c.procs.pop()
            wait_until(lambda: first in _live_chunks(c) and f"{first}.r" not in _live_chunks(c), 30)
            job = c.start_job(tmp_path / "out")
            wait_until(lambda: any(a.get("state") == "failed" for a in attempts(c.jobs_dir))
                       or job.poll() is not None, 120)
        finally:
            kill(c.node_pids("n1"), signal.SIGCONT)
        code, _, err = wait_job(job, timeout=180)
        assert code == 0, err[-3000:]
        assert_same_output(tmp_path / "out", reference, corpus)
        assert "copies found since the job was planned" in job_events(c.jobs_dir)
    finally:
        c.stop()
