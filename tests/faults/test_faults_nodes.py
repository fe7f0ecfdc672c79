"""Nodes die, pause and lose data mid-job: the output stays byte-identical to local mode.

Every test runs the word count on the three-node cluster of `fault_helpers` while it hurts
the cluster, then checks the part files against a local-mode run of the same job on the
same files (same bytes, every word counted once) and the job record for what happened.
"""
from __future__ import annotations

import re
import shutil
import signal
import time
from pathlib import Path

from tests.faults.fault_helpers import (FaultCluster, assert_same_output, attempts, job_events, job_logs, kill,
                                        wait_job, workers_running)
from geryon.disks.chunk import TEMP_MARK
from geryon.mapreduce.attempt import AttemptId
from tests.node.node_helpers import wait_until

_STAGED_OPEN = re.compile(rf"\.wc\.part(\d+)\.a(\d+){re.escape(TEMP_MARK)}")
"""A reduce attempt's part while it is written: its temporary name in the job's staging directory."""


def _done(jobs_dir, kind: str) -> set[str]:
    return {a["task"] for a in attempts(jobs_dir) if a["task"].startswith(kind) and a["state"] == "done"}


def _attempt_of(pid: int) -> str:
    """The attempt a node's worker process runs (its argv: ... geryon.node.worker JOB ATTEMPT)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    return argv[4].decode() if len(argv) > 4 else ""


def _reducer_writing(c: FaultCluster) -> list[int]:
    """The worker pid of a reduce attempt whose part is open for writing on its node (under its
    temporary name; the reducer reads its input and reduces into it from then on), or []."""
    for node in c.nodes.values():
        running = {_attempt_of(pid): pid for pid in workers_running(node.proc.popen.pid, "r")}
        for staged in node.chunks["c0"].glob(f"{TEMP_MARK}*/.wc.part*"):
            m = _STAGED_OPEN.match(staged.name)
            pid = m and running.get(str(AttemptId.of("reduce", int(m[1]), int(m[2]))))
            if pid:
                return [pid]
    return []


def test_kill_node_mid_map(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    out = c.tmp / "out"
    job = c.start_job(out, delay=0.002)
    victim = c.nodes["n1"]
    wait_until(lambda: workers_running(victim.proc.popen.pid, "m"), 20)
    kill(c.node_pids("n1"))
    victim.proc.expected_exit = True
    code, _, err = wait_job(job)
    assert code == 0, err
    assert_same_output(out, c.reference(), c.corpus)
    lost = [a for a in attempts(c.jobs_dir) if a["cpu"] == "n1" and a["state"] in ("lost", "ignored")]
    assert lost, "the killed node's attempts should be recorded as lost"
    assert "n1 declared dead" in job_events(c.jobs_dir)


def test_kill_node_after_its_maps_before_reducers_fetch(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    out = c.tmp / "out"
    job = c.start_job(out, reduce_start=3.0)
    # every map done, and n1 holds some of their outputs; reducers are still asleep
    wait_until(lambda: len(_done(c.jobs_dir, "m")) == len({a["task"] for a in attempts(c.jobs_dir)
                                                           if a["task"].startswith("m")}) > 0
               and any(a["task"].startswith("r") for a in attempts(c.jobs_dir)), 30)
    held = [a["task"] for a in attempts(c.jobs_dir) if a["cpu"] == "n1" and a["state"] == "done"]
    assert held, "n1 ran no map: the test proves nothing"
    kill(c.node_pids("n1"))
    c.nodes["n1"].proc.expected_exit = True
    code, _, err = wait_job(job)
    assert code == 0, err
    assert_same_output(out, c.reference(), c.corpus)
    rerun = {a["task"] for a in attempts(c.jobs_dir) if a["task"] in held and a["attempt"] > 0 and a["state"] == "done"}
    assert rerun == set(held), f"maps whose output died with n1 must run again: {held} vs {rerun}"


def test_kill_reducer_mid_write_leaves_no_partial_part(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    out = c.tmp / "out"
    job = c.start_job(out, reduce_delay=0.004)
    # a reducer with its part open (a key per 4 ms, some 500 keys each), not one still starting
    pids = wait_until(lambda: _reducer_writing(c), 60)
    kill(pids)
    # while the job goes on, no node ever shows a part under its final name before the commit
    for node in c.nodes.values():
        assert not [p for p in node.chunks["c0"].iterdir() if not p.name.startswith(".")]
    code, _, err = wait_job(job)
    assert code == 0, err
    assert_same_output(out, c.reference(), c.corpus)
    failed = [a for a in attempts(c.jobs_dir) if a["task"].startswith("r") and a["state"] != "done"]
    assert failed and "killed by signal 9" in failed[0]["error"]


def test_paused_node_past_its_lease_is_fenced(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    out = c.tmp / "out"
    job = c.start_job(out, delay=0.002)
    victim = c.nodes["n2"]
    wait_until(lambda: workers_running(victim.proc.popen.pid, "m"), 20)
    pids = c.node_pids("n2")
    kill(pids, signal.SIGSTOP)
    try:
        time.sleep(5)          # the lease is 2 s: its attempts run elsewhere meanwhile
    finally:
        kill(pids, signal.SIGCONT)
    code, _, err = wait_job(job)
    assert code == 0, err
    assert_same_output(out, c.reference(), c.corpus)
    mine = [a for a in attempts(c.jobs_dir) if a["cpu"] == "n2"]
    assert any(a["state"] in ("lost", "ignored") for a in mine)
    assert not any(a["state"] == "done" and a["ended"] > a["started"] + 4 for a in mine), \
        "a result delivered after the pause must not be accepted"
    assert "n2 declared dead" in job_events(c.jobs_dir)


def test_registry_killed_and_restarted_mid_job(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    out = c.tmp / "out"
    job = c.start_job(out, delay=0.002)
    wait_until(lambda: workers_running(c.nodes["n0"].proc.popen.pid, "m"), 20)
    registry = c.procs[0]
    port = int(c.registry_url.rsplit(":", 1)[1])
    registry.expected_exit = True
    registry.stop(signal.SIGKILL)
    time.sleep(1)       # the fault: the registry stays down a second while the job runs on
    c.start_registry(port=port)
    code, _, err = wait_job(job)
    assert code == 0, err
    assert_same_output(out, c.reference(), c.corpus)


def test_deleted_master_chunk_reads_switch_to_replica(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    out = c.tmp / "out"
    shutil.rmtree(c.nodes["n0"].chunks["in0"])           # d0.t's master
    code, _, err = wait_job(c.start_job(out))
    assert code == 0, err
    assert_same_output(out, c.reference(), c.corpus)
    assert "d0.t" in job_events(c.jobs_dir) + job_logs(c.jobs_dir)


def test_corrupt_byte_detected_and_replica_used(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    out = c.tmp / "out"
    victim = c.nodes["n1"].chunks["in1"] / "f03.txt"      # d1.t's master
    data = bytearray(victim.read_bytes())
    data[100] = ord("#") if data[100] != ord("#") else ord("%")
    victim.write_bytes(bytes(data))
    code, _, err = wait_job(c.start_job(out))
    assert code == 0, err
    assert_same_output(out, c.reference(), c.corpus)
    logs = job_logs(c.jobs_dir)
    assert "f03.txt" in logs and "replica" in logs, logs


def test_corrupt_byte_without_replica_fails_clearly(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    out = c.tmp / "out"
    for chunk in (c.nodes["n1"].chunks["in1"], c.nodes["n2"].chunks["rep1"]):
        victim = chunk / "f03.txt"
        data = bytearray(victim.read_bytes())
        data[100] ^= 0x01
        victim.write_bytes(bytes(data))
    code, _, err = wait_job(c.start_job(out))
    assert code == 1
    assert "f03.txt" in err and "damaged" in err, err
    assert not out.exists() or not [p for p in out.iterdir() if p.name.startswith(("part-", "_"))]


def test_a_restarted_node_sweeps_what_a_killed_job_left(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    job = c.start_job(c.tmp / "out", delay=0.002)
    wait_until(lambda: workers_running(c.nodes["n0"].proc.popen.pid, "m"), 20)
    kill(c.node_pids("n0"))     # the node first: a live node would clean up when the driver dies
    c.nodes["n0"].proc.expected_exit = True
    job.kill()
    job.communicate()
    out_chunk = c.nodes["n0"].chunks["c0"]
    assert [p for p in out_chunk.iterdir() if p.name.startswith(".geryon-tmp-")], "the job left nothing to sweep"
    c.restart_node("n0")
    assert not [p for p in out_chunk.iterdir() if p.name.startswith(".geryon-tmp-")]
