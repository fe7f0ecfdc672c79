"""Acceptance: real processes, real signals, DEFAULT liveness settings (1 s / 5 s)."""
from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from registry.client import RegistryClient

from registry_helpers import SERVE, Cluster, Proc, wait_until


@pytest.fixture
def cluster(procs: Callable[..., Proc], secret_file: Path, tmp_path: Path) -> Cluster:
    return Cluster(procs, secret_file, tmp_path)


@pytest.fixture
def viewer(cluster: Cluster, secret: bytes) -> Iterator[RegistryClient]:
    with RegistryClient(cluster.url, secret=secret, owner="viewer", request_timeout=10) as c:
        yield c


def names(c: RegistryClient) -> set[str]:
    return {s.name for s in c.index()}


def test_registration_is_visible_to_regquery_in_another_process_and_kill9_removes_it(
        cluster: Cluster, viewer: RegistryClient, record_property: Callable[[str, object], None]) -> None:
    cluster.registry()
    reg = cluster.register("tcp!host0!7001", "name", "host0", "id", "chunk0")
    out = subprocess.run(SERVE + ["regquery", "--registry", f"tcp!127.0.0.1!{cluster.port}",
                                  "--secret-file", str(cluster.secret_file), "id", "chunk0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "tcp!host0!7001 name host0 id chunk0\n"
    reg.signal(signal.SIGKILL)
    took = wait_until(lambda: "tcp!host0!7001" not in names(viewer), 1.0, interval=0.01)
    record_property("kill9_removal_s", took)
    print(f"MEASURED kill -9 removal: {took:.3f}s")


def test_sigstop_removes_within_7s_but_a_short_pause_removes_nothing(
        cluster: Cluster, viewer: RegistryClient, record_property: Callable[[str, object], None]) -> None:
    cluster.registry()
    long = cluster.register("long", "a", "1")
    short = cluster.register("short", "a", "2")
    long.signal(signal.SIGSTOP)
    short.signal(signal.SIGSTOP)
    t0 = time.monotonic()
    resumed = False
    removed_at = None
    while time.monotonic() - t0 < 7.5:
        now = names(viewer)
        assert "short" in now, f"short pause removed it after {time.monotonic() - t0:.2f}s"
        if not resumed and time.monotonic() - t0 >= 3.5:
            short.signal(signal.SIGCONT)                 # a 3.5 s pause: under 4 s
            resumed = True
        if removed_at is None and "long" not in now:
            removed_at = time.monotonic() - t0
        if removed_at is not None and resumed and time.monotonic() - t0 > 6:
            break
        time.sleep(0.02)
    assert removed_at is not None and 4.0 < removed_at <= 7.0, removed_at
    record_property("sigstop_removal_s", removed_at)
    print(f"MEASURED SIGSTOP removal: {removed_at:.3f}s")
    long.signal(signal.SIGCONT)                          # alive again: it re-registers itself
    back = wait_until(lambda: "long" in names(viewer), 3.0)
    print(f"MEASURED SIGCONT re-registration: {back:.3f}s")


def test_registry_restart_brings_back_everything_alive(
        cluster: Cluster, viewer: RegistryClient, record_property: Callable[[str, object], None]) -> None:
    reg1 = cluster.registry()
    cluster.register("tcp!h0!1", "name", "h0")
    cluster.register("tcp!h1!1", "name", "h1")
    persist = cluster.register("keep", "kind", "note", persist=True)
    doomed = cluster.register("doomed", "a", "1")
    wait_until(lambda: names(viewer) == {"tcp!h0!1", "tcp!h1!1", "keep", "doomed"}, 2)
    persist.kill()                                      # its entry persists without it
    wait_until(lambda: viewer.find({"kind": "note"}) != [], 1)
    reg1.signal(signal.SIGKILL)
    reg1.popen.wait(5)
    doomed.signal(signal.SIGKILL)                       # dies while the registry is down
    doomed.popen.wait(5)
    time.sleep(3)                                       # long enough for backoff to reach its cap
    t0 = time.monotonic()
    cluster.registry()
    want = {"tcp!h0!1", "tcp!h1!1", "keep"}
    wait_until(lambda: names(viewer) == want, 20.0, interval=0.02)
    took = time.monotonic() - t0                        # from the restart command, startup included
    record_property("reannounce_s", took)
    print(f"MEASURED re-announce after restart: {took:.3f}s")
    time.sleep(0.5)     # a while for `doomed` to come back if it wrongly would: nothing to wait on
    assert names(viewer) == want                        # and `doomed` stays gone
