"""Cluster mode with no faults: same bytes as local mode, parts on the nodes, clear errors,
task stderr streamed and kept, attempts bounded."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.faults.fault_helpers import (GERYON, FaultCluster, assert_same_output, attempts, job_record,
                                        wait_job, workers_running)
from tests.node.node_helpers import wait_until


def _geryon(c: FaultCluster, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GERYON, *args], capture_output=True, text=True, env=env or c.job_env(),
                          cwd=c.tmp, timeout=timeout)


def _job(c: FaultCluster, name: str, map_body: str) -> Path:
    d = c.tmp / name
    d.mkdir()
    (d / "job.py").write_text(
        "import os, sys, time\nfrom collections import Counter\n\n\n"
        f"def map(key, value):\n{map_body}\n    return Counter(value.split())\n\n\n"
        "def reduce(key, values):\n    return sum(values)\n")
    return d / "job.py"


def test_cluster_output_equals_local_mode(fault_cluster: FaultCluster) -> None:
    out = fault_cluster.tmp / "out"
    code, stdout, stderr = wait_job(fault_cluster.start_job(out))
    assert code == 0, stderr
    assert_same_output(out, fault_cluster.reference(), fault_cluster.corpus)
    rec = job_record(fault_cluster.jobs_dir)
    assert rec["state"] == "succeeded" and rec["mode"] == "cluster"
    # maps ran where their input lives when a slot was free there: every node ran some
    assert {a["cpu"] for a in rec["attempts"]} == {"n0", "n1", "n2"}


def test_parts_stay_on_the_nodes_without_out(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    d = c.job_dir()
    proc = _geryon(c, "mapreduce", "-q", "--name", "wc", "-R", "3", str(d / "wc.py"), str(d / "wc.py"),
                   *sorted(c.corpus))
    assert proc.returncode == 0, proc.stderr
    urls = proc.stdout.split()
    job_id = job_record(c.jobs_dir)["id"]   # the printed URLs name this run's own directory
    assert len(urls) == 3 and all(u.startswith("geryon://") and u.endswith(f"/c0/{job_id}/part-{r:05d}")
                                  for r, u in enumerate(urls)), proc.stdout
    ref = c.reference()
    by_url = {n.url.split("//")[1]: n for n in c.nodes.values()}
    for r, url in enumerate(urls):
        node = by_url[url.split("//")[1].split("/")[0]]
        assert (node.chunks["c0"] / job_id / f"part-{r:05d}").read_bytes() == (ref / f"part-{r:05d}").read_bytes()
        assert (node.chunks["c0"] / job_id / "_SUCCESS").is_file()
    # and nothing of the job's intermediate data is left on any node
    for node in c.nodes.values():
        assert not [p for p in node.chunks["c0"].iterdir() if p.name.startswith(".geryon-tmp-")]


def test_streaming_job_on_cluster_equals_local(fault_cluster: FaultCluster, examples: Path) -> None:
    c = fault_cluster
    args = ["mapreduce", "-q", "--name", "wc", "-R", "2", str(examples / "wordcount" / "map.sh"),
            str(examples / "wordcount" / "reduce.sh")]
    proc = _geryon(c, *args, "--out", str(c.tmp / "cluster"), *sorted(c.corpus))
    assert proc.returncode == 0, proc.stderr
    local = c.tmp / "local-ndb"
    lines = []
    for name, files in c.corpus.items():
        (local / name).mkdir(parents=True)
        for rel, data in files.items():
            (local / name / rel).write_bytes(data)
        lines.append(f"name={name} path={local / name}\n")
    (local / "ndb").write_text("".join(lines))
    proc = _geryon(c, *args, "--local", "--ndb", str(local / "ndb"), "--out", str(c.tmp / "local"), *sorted(c.corpus))
    assert proc.returncode == 0, proc.stderr
    for r in range(2):
        assert (c.tmp / "cluster" / f"part-{r:05d}").read_bytes() == (c.tmp / "local" / f"part-{r:05d}").read_bytes()


def test_task_stderr_is_streamed_with_its_id_and_kept(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    job = _job(c, "noisy", "    print(f'looking at {key}', file=sys.stderr)")
    proc = _geryon(c, "mapreduce", "--name", "noisy", "-R", "2", "--out", str(c.tmp / "out"), str(job), str(job),
                   "d0.t")
    assert proc.returncode == 0, proc.stderr
    assert "m0.a0: looking at d0.t/f00.txt" in proc.stderr
    rec = job_record(c.jobs_dir)
    logs = _geryon(c, "logs", rec["id"], "m0")
    assert logs.returncode == 0, logs.stderr
    assert "m0.a0: looking at d0.t/f00.txt" in logs.stdout
    listed = _geryon(c, "jobs", "--json")
    assert listed.returncode == 0 and rec["id"] in listed.stdout


def test_map_error_names_task_cpu_input_and_traceback(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    job = _job(c, "broken", "    if key.endswith('f02.txt'):\n        raise ValueError('no good ' + key)")
    out = c.tmp / "out"
    proc = _geryon(c, "mapreduce", "-q", "--name", "broken", "--out", str(out), str(job), str(job), "d1.t")
    assert proc.returncode == 1
    first = proc.stderr.splitlines()[0]
    assert first.startswith("geryon: map task m") and "d1.t" in first and "f02.txt" in first, proc.stderr
    assert "ValueError: no good d1.t/f02.txt" in first and "on cpu n" in first, proc.stderr
    assert 'raise ValueError' in proc.stderr  # the traceback's tail
    assert not out.exists() or not list(out.iterdir())
    for node in c.nodes.values():
        assert not [p for p in node.chunks["c0"].iterdir() if not p.name.startswith(".")]
    # a deterministic error is not retried
    assert len([a for a in attempts(c.jobs_dir) if a["state"] == "failed"]) == 1


def test_a_task_that_always_kills_its_worker_fails_after_4_attempts(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    job = _job(c, "crash", "    if key.endswith('f01.txt'):\n        os.kill(os.getpid(), 9)")
    proc = _geryon(c, "mapreduce", "-q", "--name", "crash", "--out", str(c.tmp / "out"), str(job), str(job), "d0.t")
    assert proc.returncode == 1
    assert "killed by signal 9" in proc.stderr and "after 4 attempts" in proc.stderr, proc.stderr
    failed = [a for a in attempts(c.jobs_dir) if a["state"] != "done"]
    assert len({a["attempt"] for a in failed if a["task"] == failed[0]["task"]}) == 4
    # tried on different cpus first: all three before any twice
    cpus = [a["cpu"] for a in sorted(failed, key=lambda a: a["attempt"]) if a["task"] == failed[0]["task"]]
    assert len(set(cpus[:3])) == 3, cpus


def test_unknown_disk_and_wrong_secret_fail_in_one_line(fault_cluster: FaultCluster, tmp_path: Path) -> None:
    c = fault_cluster
    d = c.job_dir()
    proc = _geryon(c, "mapreduce", "-q", str(d / "wc.py"), str(d / "wc.py"), "d9.nope")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "geryon: d9.nope: unknown disk (not named in the cluster's ndb file)", proc.stderr
    from registry.auth import create_secret

    create_secret(tmp_path / "other")
    env = {**c.job_env(), "GERYON_SECRET_FILE": str(tmp_path / "other")}
    proc = _geryon(c, "mapreduce", "-q", str(d / "wc.py"), str(d / "wc.py"), "d0.t", env=env)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "registry" in proc.stderr.lower(), proc.stderr


def test_killed_driver_leaves_no_task_running(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    job = c.start_job(c.tmp / "out", delay=0.01)
    wait_until(lambda: any(workers_running(n.proc.popen.pid) for n in c.nodes.values()), 20)
    assert [p for n in c.nodes.values() for p in n.chunks["c0"].iterdir() if p.name.startswith(".geryon-tmp-")]
    job.send_signal(signal.SIGKILL)
    job.wait(10)
    assert job.stdout is not None and job.stderr is not None
    job.stdout.close()
    job.stderr.close()
    wait_until(lambda: not any(workers_running(n.proc.popen.pid) for n in c.nodes.values()), 10)
    # and its intermediate data goes with it, on every node, with no node restart
    wait_until(lambda: not [p for n in c.nodes.values() for p in n.chunks["c0"].iterdir()
                            if p.name.startswith(".geryon-tmp-")], 10)
    assert all(n.proc.popen.poll() is None for n in c.nodes.values())


def test_cluster_found_over_zeroconf_when_a_disk_is_not_local(tmp_path: Path, secret_file: Path,
                                                              corpus: dict[str, dict[str, bytes]]) -> None:
    c = FaultCluster(tmp_path, secret_file, corpus)
    c.mdns = True
    try:
        c.start()
        env = {**c.job_env(), "GERYON_MDNS_INTERFACES": "127.0.0.1"}
        env.pop("GERYON_REGISTRY")
        d = c.job_dir()
        proc = _geryon(c, "mapreduce", "-q", "--name", "wc", "-R", "3", "--out", str(tmp_path / "out"),
                       "--pick", "load", str(d / "wc.py"), str(d / "wc.py"), *sorted(c.corpus), env=env)
        assert proc.returncode == 0, proc.stderr
        assert_same_output(tmp_path / "out", c.reference(), c.corpus)
        assert job_record(c.jobs_dir)["mode"] == "cluster"
    finally:
        c.stop()


def test_python_api_runs_on_the_cluster(fault_cluster: FaultCluster) -> None:
    from geryon.mapreduce.job import Job, load_script
    from registry.auth import load_secret
    from registry.client import RegistryClient

    c = fault_cluster
    script = load_script(str(c.job_dir() / "wc.py"))
    job = Job(map=script.map, reduce=script.reduce, combine=script.combine, partitions=2, name="api", format="text")
    secret = load_secret(c.secret_file)
    with RegistryClient(c.registry_url, secret=secret, owner="test") as registry:
        result = job.run(sorted(c.corpus), registry=registry, secret=secret)
        pairs = dict(result)
    assert all(p.startswith("geryon://") for p in result.parts)
    from tests.faults.fault_helpers import word_counts
    assert {k: int(v) for k, v in pairs.items()} == dict(word_counts(c.corpus))
