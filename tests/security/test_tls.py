"""A cluster on TLS: a registry and two nodes serving https, rcpu and a MapReduce job over it,
a client without the cluster CA refused, and a passive observer who sees no plaintext.

The certificates are made by `geryon init --tls` where every server and client of the
test cluster looks by default (its XDG config directory), so nothing else is configured.
"""
from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.tls import use_cluster_tls
from tests.faults.fault_helpers import GERYON, FaultCluster, assert_same_output, wait_job, write_corpus


class Observer:
    """A loopback TCP proxy that keeps every byte it forwards (the passive eavesdropper)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.seen = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._closed = False
        self._accepting = threading.Thread(target=self._accept, name="observer")
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target, 10)
            self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                t = threading.Thread(target=self._pump, args=(a, b), name="observer-pump")
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    self.seen += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)   # wakes the blocked accept(); close() alone does not
        except OSError:
            pass
        self._listener.close()
        self._accepting.join(10)
        for s in self._socks:
            s.close()
        for t in self._threads:
            t.join(10)


@pytest.fixture
def tls_cluster(tmp_path: Path, secret_file: Path) -> Iterator[FaultCluster]:
    tls_dir = tmp_path / "config" / "geryon" / "tls"
    made = subprocess.run([*GERYON, "init", "--tls", "--secret-file", str(secret_file), "--tls-dir", str(tls_dir)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    use_cluster_tls(tls_dir / "ca.pem")             # this process's own client (readiness checks) too
    c = FaultCluster(tmp_path, secret_file, write_corpus(Path("."), disks=2, files=4, lines=200))
    try:
        c.start(nodes=2)
        yield c
    finally:
        c.stop()
        use_cluster_tls(None, enabled=False)


def _geryon(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GERYON, *args], capture_output=True, text=True, env=env, timeout=120)


def test_rcpu_and_mapreduce_run_on_a_tls_cluster(tls_cluster: FaultCluster) -> None:
    c = tls_cluster
    assert c.registry_url.startswith("https://")
    env = c.job_env()
    cpus = _geryon(env, "regquery", "svc", "rstyx")
    assert cpus.returncode == 0, cpus.stderr
    assert cpus.stdout.count(" url https://") == 2, cpus.stdout
    run = _geryon(env, "rcpu", "echo hello over tls")
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and lines[0] == "hello over tls", run.stderr
    assert all(line.endswith(".cpu") for line in lines[1:]), run.stdout   # rcpu names its output disk
    out = c.tmp / "out"
    code, _, stderr = wait_job(c.start_job(out))
    assert code == 0, stderr
    assert_same_output(out, c.reference(), c.corpus)
    for proc in c.procs:
        assert "TLS with" in proc.stderr()


def test_a_client_without_the_cluster_ca_is_refused(tls_cluster: FaultCluster, tmp_path: Path) -> None:
    env = tls_cluster.job_env() | {"XDG_CONFIG_HOME": str(tmp_path / "elsewhere")}   # the secret, not the CA
    for args in (("regquery", "svc", "rstyx"),
                 ("regquery", "--registry", tls_cluster.registry_url.replace("https://", "http://"), "svc", "rstyx")):
        done = _geryon(env, *args)
        assert done.returncode == 1 and done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr      # one line (click's `Error: ...`)
    assert "certificate verify failed" in _geryon(env, "regquery", "svc", "rstyx").stderr
    ran = _geryon(env, "rcpu", "echo should not run")
    assert ran.returncode == 1 and ran.stdout == "" and "certificate verify failed" in ran.stderr
    assert ran.stderr.strip().splitlines()[-1].startswith("geryon: ")


def test_a_passive_observer_sees_no_plaintext(tls_cluster: FaultCluster) -> None:
    c = tls_cluster
    env = c.job_env()
    host, port = c.registry_url.split("://", 1)[1].rsplit(":", 1)
    node_host, node_port = c.nodes["n0"].url.split("://", 1)[1].rsplit(":", 1)
    marker = f"private-{os.getpid()}-words"
    to_registry = Observer((host, int(port)))
    to_node = Observer((node_host, int(node_port)))
    try:
        found = _geryon(env, "regquery", "--registry", f"https://127.0.0.1:{to_registry.port}", "svc", "rstyx")
        assert found.returncode == 0 and "rstyx" in found.stdout, found.stderr
        ran = _geryon(env, "exec", "-n", "1", "--node", f"https://127.0.0.1:{to_node.port}", "--", "echo", marker)
        assert ran.returncode == 0 and marker in ran.stdout, ran.stderr
    finally:
        to_registry.close()
        to_node.close()
    for seen in (bytes(to_registry.seen), bytes(to_node.seen)):
        assert seen[:1] == b"\x16"                 # a TLS handshake record, first thing on the wire
        for plain in (b"rstyx", b"/v1/", b"X-Geryon", b"HTTP/1.1", b"echo", marker.encode()):
            assert plain not in seen, plain
