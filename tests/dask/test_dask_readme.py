"""The README's "Running on a Dask cluster" does what it says, run as written: its `dask
scheduler`, two `dask worker` and `geryon mapreduce --dask` commands (only the scheduler's
address put in for SCHEDULER, and a free port for 8786), from another working directory with
a fresh HOME; the parts count the words of the two sample disks, with `_SUCCESS`, and `geryon
jobs` records a Dask job."""
from __future__ import annotations

import collections
import os
import pathlib
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
DEADLINE = 120.0
"""Seconds the scheduler and workers have to come up, and the job to end (a loaded machine)."""


def _dask_section_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Running on a Dask cluster", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```sh\n(.*?)```", section, re.S)[0]
    joined = block.replace("\\\n", " ")
    return [line.split("#", 1)[0].strip() for line in joined.splitlines() if line.split("#", 1)[0].strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _argv(command: str, port: int) -> list[str]:
    command = command.replace("SCHEDULER:8786", f"127.0.0.1:{port}").replace("--port 8786", f"--port {port}")
    argv = shlex.split(command)
    return [str(BIN / argv[0]), *argv[1:]]


def _wait(what: str, check, procs: list[subprocess.Popen]) -> None:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if check():
            return
        for p in procs:
            assert p.poll() is None, f"{p.args} ended with {p.returncode} while waiting for {what}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_readme_dask_section_runs_as_written(tmp_path: pathlib.Path) -> None:
    commands = _dask_section_commands()
    assert [c.split()[:2] for c in commands] == [["dask", "scheduler"], ["dask", "worker"],
                                                ["geryon", "mapreduce"]], commands
    port = _free_port()
    cwd = tmp_path / "my work dir"
    cwd.mkdir()
    (cwd / "examples").symlink_to(REPO / "examples")
    home = tmp_path / "fresh home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    # A fresh user: nothing the test session set for its other tests (a shared job-record
    # directory, a config home) and no cluster settings of this machine.
    for name in ("GERYON_DASK_SCHEDULER", "GERYON_REGISTRY", "GERYON_NDB", "GERYON_JOBS_DIR", "GERYON_SECRET_FILE",
                 "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        env.pop(name, None)
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        for i, command in enumerate([commands[0], commands[1], commands[1]]):   # "here: two" workers
            log = open(tmp_path / f"dask {i}.log", "wb")
            logs.append(log)
            procs.append(subprocess.Popen(_argv(command, port), cwd=cwd, env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
            if i == 0:
                _wait("the scheduler", lambda: b"Scheduler at:" in (tmp_path / "dask 0.log").read_bytes(), procs)
        _wait("two workers registered",
              lambda: all(b"Registered to:" in (tmp_path / f"dask {i}.log").read_bytes() for i in (1, 2)), procs)
        job = subprocess.run(_argv(commands[2], port), cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=DEADLINE * 3)
        assert job.returncode == 0, job.stderr
        jobs = subprocess.run([str(BIN / "geryon"), "jobs"], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=DEADLINE)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for log in logs:
            log.close()
    out = cwd / "wc.out"
    assert (out / "_SUCCESS").exists()
    got: dict[str, int] = {}
    for part in sorted(out.glob("part-*")):
        for line in part.read_text().splitlines():
            word, count = line.split("\t")
            assert word not in got
            got[word] = int(count)
    oracle: collections.Counter = collections.Counter()
    for disk in ("d0.mbox", "d1.mbox"):
        for path in sorted((REPO / "examples" / "disks" / disk).iterdir()):
            oracle.update(path.read_text().split())
    assert got == dict(oracle)
    assert jobs.returncode == 0, jobs.stderr
    rows = [line.split() for line in jobs.stdout.splitlines()[1:]]
    assert [(r[2], r[3]) for r in rows] == [("dask", "succeeded")], jobs.stdout
