"""A real Dask cluster for the Dask executor's tests: `dask scheduler` and two `dask worker`
processes on loopback, each in its own directory with a fresh HOME, and the geryon CLI run
as a user runs it (a process, from another working directory).

Helpers are fixtures (this directory has no __init__.py, so nothing here is imported by name).
"""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
START_DEADLINE = 60.0
"""Seconds the scheduler and workers have to come up (a loaded, shared machine)."""


@dataclass
class DaskCluster:
    address: str
    root: pathlib.Path
    env: dict[str, str]
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    def stop(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _wait_for(what: str, check: Callable[[], bool], deadline: float = START_DEADLINE) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def start_cluster(root: pathlib.Path, workers: int = 2, env: dict[str, str] | None = None) -> DaskCluster:
    """A scheduler and `workers` single-threaded workers (no nanny: a killed worker stays dead),
    with `env` added to their environment."""
    home = root / "home"
    home.mkdir(parents=True)
    env = {**os.environ, "HOME": str(home), "DASK_DISTRIBUTED__WORKER__DAEMON": "False", **(env or {})}
    env.pop("GERYON_DASK_SCHEDULER", None)
    sfile = root / "scheduler.json"
    with open(root / "scheduler.log", "wb") as log:   # the child keeps its own copy
        sched = subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(sfile)],
                                 cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    _wait_for("the scheduler's file", sfile.exists)
    import json

    address = ""

    def written() -> bool:
        nonlocal address
        try:
            address = json.loads(sfile.read_text())["address"]
        except (OSError, ValueError, KeyError):
            return False
        return True
    _wait_for("the scheduler's address", written)
    cluster = DaskCluster(address, root, env, sched)
    for i in range(workers):
        wdir = root / f"worker {i}"
        wdir.mkdir()
        with open(root / f"worker{i}.log", "wb") as wlog:
            cluster.workers.append(subprocess.Popen(
                [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                 "--local-directory", str(wdir), "--name", f"w{i}"],
                cwd=wdir, env=env, stdout=wlog, stderr=subprocess.STDOUT))
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(workers, timeout=START_DEADLINE)
    return cluster


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """One cluster shared by the tests that leave it whole."""
    cluster = start_cluster(tmp_path_factory.mktemp("dask cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def own_cluster(tmp_path: pathlib.Path) -> Iterator[DaskCluster]:
    """A cluster of this test's own (it kills a worker)."""
    cluster = start_cluster(tmp_path / "dask cluster")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_with(tmp_path: pathlib.Path) -> Iterator[Callable[[dict[str, str]], DaskCluster]]:
    """Start a cluster of this test's own whose processes get the environment given."""
    started: list[DaskCluster] = []

    def start(env: dict[str, str]) -> DaskCluster:
        started.append(start_cluster(tmp_path / f"dask cluster {len(started)}", env=env))
        return started[-1]
    try:
        yield start
    finally:
        for c in started:
            c.stop()


@pytest.fixture
def geryon_cli(tmp_path: pathlib.Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run `geryon ARGS` as a process from a fresh working directory with a fresh HOME."""
    cwd = tmp_path / "user dir"
    cwd.mkdir()
    home = tmp_path / "user home"
    home.mkdir()

    def run(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess:
        full = {**os.environ, "HOME": str(home), **(env or {})}
        return subprocess.run([str(BIN / "geryon"), *args], cwd=cwd, env=full, capture_output=True, text=True,
                              timeout=600, **kw)
    return run


@pytest.fixture
def text_disks(tmp_path: pathlib.Path) -> list[pathlib.Path]:
    """Two input disks of real text (the examples' mboxes, under other names and in another order)."""
    disks = []
    for i, src in enumerate(["d1.mbox", "d0.mbox"]):
        d = tmp_path / f"input disk {i}"
        d.mkdir()
        for f in sorted((REPO / "examples" / "disks" / src).iterdir()):
            if f.is_file():
                (d / f"copy of {f.name}").write_bytes(f.read_bytes())
        disks.append(d)
    return disks


def parts(out: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name.startswith("part-")}


@pytest.fixture
def read_parts() -> Callable[[pathlib.Path], dict[str, bytes]]:
    return parts
