"""Faults on a real Dask cluster: a failing map is named with its traceback; a worker killed
(kill -9) while a map or a reduce runs on it loses its attempts and its map outputs, which
run again on the other worker, and the output is still byte-identical to local mode."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
JOBS = pathlib.Path(__file__).resolve().parent / "jobs"
DEADLINE = 120.0


def _local(geryon_cli, disks, out, *extra):
    done = geryon_cli("mapreduce", "-q", *extra, *map(str, disks), "--local", "--out", str(out))
    assert done.returncode == 0, done.stderr


def test_a_failing_map_is_named_with_its_traceback(dask_cluster, geryon_cli, text_disks, tmp_path) -> None:
    out = tmp_path / "out"
    done = geryon_cli("mapreduce", str(JOBS / "failmap.py"), str(JOBS / "holdreduce.py"), *map(str, text_disks),
                      "--dask", dask_cluster.address, "--out", str(out))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    first = next(i for i, l in enumerate(lines) if l.startswith("geryon: map task"))
    assert "failed: ValueError: cannot parse a record that says sixty" in lines[first]
    assert "at record" in lines[first] and "[attempt m" in lines[first] and "on cpu tcp://127.0.0.1:" in lines[first]
    tail = "\n".join(lines[first + 1:])
    assert "failmap.py" in tail and "in parse_record" in tail     # the user's traceback follows
    assert not [p for p in out.iterdir() if p.name.startswith("part-")] if out.exists() else True
    assert not (out / "_SUCCESS").exists()


def _wait_for_file(path: pathlib.Path, job: subprocess.Popen) -> str:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if path.exists() and path.read_text():
            return path.read_text()
        assert job.poll() is None, job.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


@pytest.mark.parametrize("phase", ["map", "reduce"])
def test_a_worker_killed_mid_job_changes_no_output_byte(own_cluster, geryon_cli, text_disks, tmp_path,
                                                        read_parts, phase) -> None:
    hold = tmp_path / "hold dir"
    hold.mkdir()
    released = tmp_path / "released"
    released.mkdir()
    (released / "held").write_text("0 local")      # local mode never holds
    # Hold the last input file (every worker has written map outputs by then) or a word.
    last = sorted(p.name for p in text_disks[1].iterdir())[-1]
    params = ["-D", f"hold_on={last}" if phase == "map" else "hold_key=sixty"]
    steps = [str(JOBS / "holdmap.py"), str(JOBS / "holdreduce.py")]
    local = tmp_path / "local out"
    _local(geryon_cli, text_disks, local, *steps, *params, "-D", f"dir={released}", "-R", "4",
           "--split-size", "20K")
    out = tmp_path / "dask out"
    args = ["mapreduce", *steps, *map(str, text_disks), "--dask", own_cluster.address, "--out", str(out),
            *params, "-D", f"dir={hold}", "-R", "4", "--split-size", "20K"]
    job = subprocess.Popen([str(pathlib.Path(os.sys.executable).parent / "geryon"), *args], cwd=tmp_path,
                           env={**os.environ, "HOME": str(tmp_path)}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        pid = int(_wait_for_file(hold / "held", job).split()[0])
        assert pid in own_cluster.worker_pids()            # the attempt's parent is a Dask worker
        os.kill(pid, signal.SIGKILL)
        (hold / "release").write_text("")
        stdout, stderr = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert job.returncode == 0, stderr
    assert read_parts(out) == read_parts(local) and len(read_parts(out)) == 4
    assert "is dead: running" in stderr, stderr          # the driver buried the worker ...
    dead = [l for l in stderr.splitlines() if "is dead: running" in l][0]
    assert " 0 map(s)" not in dead, stderr                # ... and ran its map outputs again
