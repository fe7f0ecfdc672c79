"""A randomized fault schedule: 20 runs, each injecting 3 faults at random times.

Faults: kill -9 a node (daemon and workers), SIGSTOP a node past its lease then SIGCONT,
kill -9 one task worker, kill -9 the registry and restart it, delete a master chunk,
corrupt a byte of a master chunk. Each run draws 3 different faults from a generator
seeded with the run's number (so a failing run can be replayed alone), with targets that
leave every disk one good copy (a killed node is never the replica holder of a damaged
master: no system can read data whose every copy is gone). Every output must equal the
local-mode output byte for byte, every word counted once.
"""
from __future__ import annotations

import random
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.fault_helpers import (FaultCluster, assert_same_output, kill, wait_job, workers_running,
                                        write_corpus)

RUNS = 20
NODES = 3

CORPUS = write_corpus(Path("."), disks=3, files=4, lines=250, seed=11)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from registry.auth import create_secret

    tmp = tmp_path_factory.mktemp("reference")
    create_secret(tmp / "secret")
    return FaultCluster(tmp, tmp / "secret", CORPUS).reference()


def schedule(run: int) -> list[tuple[str, int, float]]:
    """Three (fault, target, seconds after the job starts) for this run."""
    rng = random.Random(run)
    faults = rng.sample(["kill_node", "pause_node", "kill_worker", "registry", "delete_master", "corrupt"], 3)
    damaged = {rng.randrange(len(CORPUS)) for f in faults if f in ("delete_master", "corrupt")}
    replica_holders = {(k + 1) % NODES for k in damaged}
    out = []
    for fault in faults:
        if fault in ("delete_master", "corrupt"):
            target = sorted(damaged)[0] if len(damaged) == 1 or fault == "delete_master" else sorted(damaged)[-1]
        elif fault == "kill_node":
            target = rng.choice([n for n in range(NODES) if n not in replica_holders])
        else:
            target = rng.randrange(NODES)
        out.append((fault, target, 0.0 if fault in ("delete_master", "corrupt") else rng.uniform(0.2, 3.0)))
    return out


def inject(c: FaultCluster, fault: str, target: int, stop: threading.Event) -> None:
    node = f"n{target}"
    if fault == "delete_master":
        shutil.rmtree(c.nodes[f"n{target % NODES}"].chunks[f"in{target}"], ignore_errors=True)
    elif fault == "corrupt":
        chunk = c.nodes[f"n{target % NODES}"].chunks[f"in{target}"]
        if chunk.exists():
            victim = chunk / "f01.txt"
            data = bytearray(victim.read_bytes())
            data[len(data) // 2] ^= 0x20
            victim.write_bytes(bytes(data))
    elif fault == "kill_node":
        c.nodes[node].proc.expected_exit = True
        kill(c.node_pids(node))
    elif fault == "pause_node":
        pids = c.node_pids(node)
        kill(pids, signal.SIGSTOP)
        try:
            stop.wait(3.5)
        finally:
            kill(pids, signal.SIGCONT)
    elif fault == "kill_worker":
        pids = [p for n in c.nodes.values() if n.proc.popen.poll() is None for p in workers_running(n.proc.popen.pid)]
        if pids:
            kill([random.Random(target).choice(pids)])
    elif fault == "registry":
        registry = c.procs[0]
        port = int(c.registry_url.rsplit(":", 1)[1])
        registry.expected_exit = True
        registry.stop(signal.SIGKILL)
        stop.wait(0.5)
        c.procs[0] = c.start_registry(port=port)
        c.procs.pop()  # start_registry appended it; it now stands where the old one was


def _later(delay: float, fn: Callable[[], None], stop: threading.Event, errors: list[BaseException]) -> threading.Thread:
    def go() -> None:
        if stop.wait(delay):
            return
        try:
            fn()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("run", range(RUNS))
def test_random_faults(run: int, tmp_path: Path, secret_file: Path, reference: Path) -> None:
    c = FaultCluster(tmp_path, secret_file, CORPUS)
    stop = threading.Event()
    errors: list[BaseException] = []
    threads: list[threading.Thread] = []
    plan = schedule(run)
    try:
        c.start(nodes=NODES)
        for fault, target, at in plan:
            if at == 0.0:
                inject(c, fault, target, stop)
        out = tmp_path / "out"
        job = c.start_job(out, delay=0.001)
        for fault, target, at in plan:
            if at > 0.0:
                threads.append(_later(at, lambda f=fault, t=target: inject(c, f, t, stop), stop, errors))
        code, _, err = wait_job(job, timeout=180)
        for t in threads:
            t.join(10)
        assert not errors, errors
        assert code == 0, f"run {run} {plan}:\n{err[-3000:]}"
        assert_same_output(out, reference, CORPUS)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        c.stop()
