"""Multi-step jobs on a real Dask cluster: the steps' outputs feed the next step from the workers
that made them (read from the file, or over Dask's comms with --dask-shuffle transfer), the last
step's parts byte-identical to local mode's; nothing of the steps is left on the workers; a failed
step commits nothing; the Python API; an unreachable scheduler is one line. (Local mode and the
cluster: tests/engine/test_engine_steps.py, tests/faults/test_faults_steps.py.)"""
from __future__ import annotations

import json
import pathlib
import socket

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
JOBS = pathlib.Path(__file__).resolve().parent / "jobs"
TOPWORDS = REPO / "examples" / "topwords" / "topwords.py"


def _left_on_workers(cluster, job_id: str) -> list[str]:
    """The job's directories (every step's: JOB, JOB-s1, ...) still on the workers' disks."""
    homes = list(cluster.root.glob("worker */dask-scratch-space/worker-*/geryon/jobs"))
    assert homes     # where the attempts ran (Worker.local_directory): a left-over would be seen
    return sorted(str(p) for home in homes for p in home.iterdir()
                  if p.name == job_id or p.name.startswith(f"{job_id}-s"))


def _only_job(geryon_cli, jobs: pathlib.Path) -> dict:
    listing = geryon_cli("jobs", "--jobs-dir", str(jobs), "--json")
    assert listing.returncode == 0, listing.stderr
    records = json.loads(listing.stdout)
    assert len(records) == 1, records
    return records[0]


@pytest.mark.parametrize("shuffle", ["auto", "transfer"])
def test_the_topwords_steps_on_dask_equal_local_mode(shuffle, dask_cluster, geryon_cli, text_disks, tmp_path,
                                                     read_parts) -> None:
    common = ["-D", "top=4", "--split-size", "16K", str(TOPWORDS), *map(str, text_disks)]
    local, out, jobs = tmp_path / "local out", tmp_path / "dask out", tmp_path / "my jobs"
    done = geryon_cli("mapreduce", "-q", "--local", "--out", str(local), *common)
    assert done.returncode == 0, done.stderr
    done = geryon_cli("mapreduce", "--dask", dask_cluster.address, "--dask-shuffle", shuffle, "--out", str(out),
                      "--jobs-dir", str(jobs), *common)
    assert done.returncode == 0, done.stderr
    got, want = read_parts(out), read_parts(local)
    assert got == want and len(got) == 2
    folders = [line.split("\t")[0] for data in got.values() for line in data.decode().splitlines()]
    assert sorted(folders) == ["input disk 0", "input disk 1"]
    assert (out / "_SUCCESS").is_file()
    assert "step 1/2 map" in done.stderr and "step 2/2 reduce" in done.stderr
    record = _only_job(geryon_cli, jobs)
    assert record["state"] == "succeeded" and record["mode"] == "dask"
    shown = geryon_cli("jobs", "--jobs-dir", str(jobs), record["id"])
    assert "step 2 reduce 2/2 done" in shown.stdout, shown.stdout
    assert _left_on_workers(dask_cluster, record["id"]) == []


def test_streaming_and_python_steps_on_dask_equal_local_mode(dask_cluster, geryon_cli, text_disks, tmp_path,
                                                             read_parts) -> None:
    """A streaming step, a Python map-only step reading its text lines, a streaming step: three
    steps, two of them kept on the workers between steps."""
    common = ["--reader", "lines", "--split-size", "20K", str(JOBS / "streamsteps.py"), *map(str, text_disks)]
    local, out = tmp_path / "local out", tmp_path / "dask out"
    done = geryon_cli("mapreduce", "-q", "--local", "--out", str(local), *common)
    assert done.returncode == 0, done.stderr
    done = geryon_cli("mapreduce", "-q", "--dask", dask_cluster.address, "--out", str(out), *common)
    assert done.returncode == 0, done.stderr
    got = read_parts(out)
    assert got == read_parts(local) and len(got) == 1
    counts = [int(line.split("\t")[0]) for line in got["part-00000"].decode().splitlines()]
    assert counts and counts == sorted(counts)


def test_a_failed_step_on_dask_commits_nothing_and_leaves_nothing(dask_cluster, geryon_cli, text_disks,
                                                                  tmp_path) -> None:
    out, jobs = tmp_path / "out", tmp_path / "jobs"
    done = geryon_cli("mapreduce", "-q", "--dask", dask_cluster.address, "--out", str(out), "--jobs-dir", str(jobs),
                      str(JOBS / "badsteps.py"), *map(str, text_disks))
    assert done.returncode == 1
    first = done.stderr.splitlines()[0]
    assert first.startswith("geryon: step 2 of 2 (reduce broken): reduce task r"), done.stderr
    assert "reduce must yield (key, value) pairs, got 5" in first
    assert not out.exists() or list(out.iterdir()) == []
    record = _only_job(geryon_cli, jobs)
    assert record["state"] == "failed"
    assert _left_on_workers(dask_cluster, record["id"]) == []     # step 1's kept parts removed too


def test_steps_through_the_python_api_on_dask(dask_cluster, text_disks, tmp_path) -> None:
    """Job(steps=...).run(dask=...): two Python steps, the records' types kept between them, and a
    total-order last step (its sampler reads step 1's parts on the workers)."""
    from geryon.mapreduce.job import Job, load_script

    steps = load_script(str(JOBS / "pysteps.py")).steps
    for total_order in (False, True):
        job = Job(steps=steps(r1=3, r2=3, total_order=total_order), name=f"api{int(total_order)}",
                  format="json", split_size=24 << 10)
        here = job.run([str(d) for d in text_disks], out=str(tmp_path / f"local {total_order}"), local=True)
        there = job.run([str(d) for d in text_disks], out=str(tmp_path / f"dask {total_order}"),
                        dask=dask_cluster.address)
        assert [p.read_bytes() for p in sorted((tmp_path / f"dask {total_order}").glob("part-*"))] == \
            [p.read_bytes() for p in sorted((tmp_path / f"local {total_order}").glob("part-*"))]
        assert list(there) == list(here) and len(list(there)) > 3
        assert [s.reduce.tasks for s in there.report.steps] == [3, 3]
        if total_order:
            counts = [n for n, _ in there]
            assert counts == sorted(counts)
        assert _left_on_workers(dask_cluster, there.report.job_id) == []


def test_a_multi_step_job_on_an_unreachable_scheduler_is_one_line(geryon_cli, text_disks, tmp_path) -> None:
    with socket.socket() as s:      # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    done = geryon_cli("mapreduce", "--dask", f"tcp://127.0.0.1:{port}", "--out", str(out), str(TOPWORDS),
                      str(text_disks[0]), env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"})
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"geryon: Dask scheduler tcp://127.0.0.1:{port}: cannot connect"), done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() or not list(out.iterdir())
