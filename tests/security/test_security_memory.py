"""Bounded memory (issue 11 item 8, issue 17 item 1), played against a real node daemon.

A 2 GiB file copied to a node and back with `geryon cp` arrives byte-identical while the
node and each client process stay under 200 MB peak RSS; an unsigned PUT declaring 2 GiB
is refused (401) before its body is read, four at a time too, with the node's memory flat
and a legitimate request answered right after.
"""
from __future__ import annotations

import hashlib
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from geryon.disks.remote import RemoteFS
from registry.auth import load_secret
from tests.node.node_helpers import VERB_CLI, Cluster, Node

BIG = 2 << 30
"""Bytes of the large file: 2 GiB, larger than the node's former 1 GiB body limit."""

RSS_LIMIT = 200 << 20
"""The peak resident memory a node or a client may reach while moving it."""

FLAT = 64 << 20
"""How much a node's peak RSS may grow while refusing oversize unsigned bodies."""


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    return _status_kb(pid, "VmHWM") << 10


def _reset_peak(pid: int) -> None:
    """Start the process's VmHWM again from its current RSS (proc(5): clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _cli_env(cluster: Cluster) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    env.update({"GERYON_SECRET_FILE": str(cluster.secret_file), "GERYON_NDB": str(cluster.ndb)})
    return env


def _run_measured(argv: Sequence[str], env: dict[str, str], err: Path, timeout: float) -> int:
    """Run a client to its end; its peak RSS in bytes: the largest VmHWM read while it runs.

    Not wait4's ru_maxrss: a forked child starts with its parent's, so a pytest process grown
    large by earlier tests would be counted as the client's (seen in a whole-suite run)."""
    with open(err, "w") as errf:
        p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errf)
    deadline = time.monotonic() + timeout
    peak = 0
    while True:
        try:
            peak = max(peak, _status_kb(p.pid, "VmHWM") << 10)
        except (OSError, ValueError, IndexError, AssertionError):
            pass                     # exiting: the last reading stands
        pid, status, _ = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            raise AssertionError(f"{argv[-2:]} still running after {timeout}s: {err.read_text()[-2000:]}")
        time.sleep(0.1)
    assert p.returncode == 0, err.read_text()[-2000:]
    assert peak > 0, "the client's memory was never read"
    return peak


def _write_big(path: Path, size: int) -> str:
    """A file of `size` bytes that no block of which repeats; its SHA-256."""
    block = bytearray(os.urandom(1 << 20))
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(size // len(block)):
            block[:8] = i.to_bytes(8, "big")
            f.write(block)
            digest.update(block)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            digest.update(data)
    return digest.hexdigest()


def _available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) << 10
    return 0


@pytest.fixture
def roomy(tmp_path: Path, secret_file: Path) -> Iterator[Cluster]:
    """A cluster whose directory holds two copies of BIG: the test's tmp directory, or, on a
    machine short of disk (CI's free space varies), a RAM-backed tmpfs (root only, as CI is)."""
    need = 2 * BIG + (1 << 30)
    where, mounted = tmp_path, False
    if shutil.disk_usage(tmp_path).free <= need:
        assert os.geteuid() == 0 and _available_memory() > need + (2 << 30), (
            f"this test needs {need} free bytes in {tmp_path} (has {shutil.disk_usage(tmp_path).free}), "
            f"or root and that much free memory for a tmpfs")
        where = tmp_path / "ram"
        where.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={need}", "tmpfs", str(where)], check=True)
        mounted = True
    c = Cluster(where, secret_file)
    try:
        yield c
    finally:
        c.stop()
        if mounted:
            subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_2gib_file_goes_to_a_node_and_back_in_bounded_memory(roomy: Cluster) -> None:
    cluster, tmp_path = roomy, roomy.tmp
    cluster.start_registry()
    node = cluster.start_node("n0", capacity=BIG + (256 << 20), register=False)
    pid = node.proc.popen.pid
    url = f"{node.chunk_url('c0')}/big"
    src = tmp_path / "big.src"
    try:
        want = _write_big(src, BIG)
        up = _run_measured([*VERB_CLI, "cp", str(src), url], _cli_env(cluster), tmp_path / "up.err", 900)
        src.unlink()
        node_up = _peak_rss(pid)
        assert _sha256(node.chunks["c0"] / "big") == want
        _reset_peak(pid)
        back = tmp_path / "big.back"
        down = _run_measured([*VERB_CLI, "cp", url, str(back)], _cli_env(cluster), tmp_path / "down.err", 900)
        node_down = _peak_rss(pid)
        assert back.stat().st_size == BIG
        assert _sha256(back) == want
        print(f"\n2 GiB upload: node peak {node_up >> 20} MB, client peak {up >> 20} MB; "
              f"download: node peak {node_down >> 20} MB, client peak {down >> 20} MB")
        assert node_up < RSS_LIMIT, f"node peaked at {node_up >> 20} MB during the upload"
        assert up < RSS_LIMIT, f"the uploading client peaked at {up >> 20} MB"
        assert node_down < RSS_LIMIT, f"node peaked at {node_down >> 20} MB during the download"
        assert down < RSS_LIMIT, f"the downloading client peaked at {down >> 20} MB"
    finally:
        for p in (src, tmp_path / "big.back", node.chunks["c0"] / "big"):
            p.unlink(missing_ok=True)


def _unsigned_put(host: str, port: int, length: int, out: list[tuple[bytes, int]]) -> None:
    """PUT `length` declared bytes of zeros, unsigned, until the node answers; (status line, bytes sent)."""
    zeros = bytes(1 << 16)
    answer = b""
    sent = 0
    with socket.create_connection((host, port), timeout=60) as s:
        s.sendall(f"PUT /v1/chunks/c0/file?path=/x HTTP/1.1\r\nHost: {host}:{port}\r\n"
                  f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n".encode())
        s.setblocking(False)
        deadline = time.monotonic() + 120
        while b"\r\n" not in answer and time.monotonic() < deadline:
            readable, writable, _ = select.select([s], [s] if sent < length else [], [], 5)
            if readable:
                data = s.recv(1 << 16)
                if not data:
                    break
                answer += data
            elif writable:
                try:
                    sent += s.send(zeros[:min(len(zeros), length - sent)])
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    break
    out.append((answer.split(b"\r\n", 1)[0], sent))


def _legitimate(node: Node, secret: bytes) -> None:
    fs = RemoteFS(node.url, "c0", secret)
    try:
        fs.writebytes("/after", b"still here")
        assert fs.readbytes("/after") == b"still here"
    finally:
        fs.close()


def test_an_unsigned_2gib_put_is_refused_before_its_body_is_read(cluster: Cluster) -> None:
    cluster.start_registry()
    node = cluster.start_node("n0", register=False)
    pid = node.proc.popen.pid
    host, port = node.url.split("://", 1)[1].rsplit(":", 1)
    _reset_peak(pid)
    before = _peak_rss(pid)
    one: list[tuple[bytes, int]] = []
    _unsigned_put(host, int(port), BIG, one)
    status, sent = one[0]
    assert status.startswith(b"HTTP/1.1 401"), status
    assert sent < BIG, "the node answered only once the whole body was sent"
    four: list[tuple[bytes, int]] = []
    threads = [threading.Thread(target=_unsigned_put, args=(host, int(port), BIG, four)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert len(four) == 4
    assert all(s.startswith(b"HTTP/1.1 401") and n < BIG for s, n in four), four
    grew = _peak_rss(pid) - before
    print(f"\nunsigned 2 GiB PUTs: sent {[n >> 20 for _, n in one + four]} MB before the 401; "
          f"node peak RSS grew {grew >> 20} MB")
    assert grew < FLAT, f"the node's peak RSS grew {grew >> 20} MB refusing unsigned bodies"
    _legitimate(node, load_secret(cluster.secret_file))
    assert not (node.chunks["c0"] / "x").exists()


@pytest.fixture(autouse=True)
def _procfs() -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.fail("these tests read peak RSS from /proc (Linux)")
