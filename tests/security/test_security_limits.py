"""Limits a client without the secret cannot get past: connections, file descriptors, log lines.

Each test plays the attack against a real node or registry started as a process (the
fd-starvation ones under `prlimit --nofile=1024`, what the shipped unit used to give),
checks that legitimate signed requests still succeed with the clients' normal timeouts
while the attack is held, and that the server's log grew by a few lines at most.
"""
from __future__ import annotations

import os
import resource
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from geryon.net.connection import NodeConnection
from registry.auth import HEADER_SERVER
from registry.guard import ACCEPT_BURST, ConnectionLimits
from registry.ratelog import RateLog
from registry.signer import Signer
from registry.tls import use_cluster_tls
from tests.node.node_helpers import GERYON, Cluster, Proc, wait_until

PRLIMIT = ["prlimit", "--nofile=1024:1024"]
HALF_OPEN = 1100
LOG_BUDGET = 4096          # bytes of log an attack may cost: a few lines


@pytest.fixture(autouse=True)
def _enough_descriptors() -> Iterator[None]:
    """The attacker (this process) needs more than 1,100 sockets open at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 8192:
        try:                                   # root may raise the hard limit too
            resource.setrlimit(resource.RLIMIT_NOFILE, (8192, max(hard, 8192)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _half_open(port: int, n: int, sources: Sequence[str],
               start: bytes = b"GET /v1/node HTTP/1.1\r\nHost: x") -> list[socket.socket]:
    """`n` connections from `sources` (loopback addresses), each with half a request line."""
    socks = []
    try:
        for i in range(n):
            s = socket.socket()
            s.bind((sources[i % len(sources)], 0))
            s.settimeout(30)
            s.connect(("127.0.0.1", port))
            try:
                s.sendall(start)                                   # never finished
            except OSError:
                pass                                               # already closed by the server
            socks.append(s)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def _open_fds(proc: Proc) -> int:
    return len(os.listdir(f"/proc/{proc.popen.pid}/fd"))


def _closed_by_server(socks: list[socket.socket]) -> int:
    """How many of `socks` the server has closed (EOF or reset waiting to be read)."""
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return closed


@pytest.mark.parametrize("sources", [["127.0.0.2"], [f"127.0.1.{i}" for i in range(1, 101)]],
                         ids=["one-address", "100-addresses"])
def test_half_open_connections_do_not_starve_a_node(cluster: Cluster, secret: bytes,
                                                    sources: list[str]) -> None:
    node = cluster.start_node("n0", register=False, prefix=PRLIMIT)
    port = _port(node.url)
    before = len(node.proc.stderr())
    socks = _half_open(port, HALF_OPEN, sources)
    try:
        # The server holds at most its cap (512, half its 1024 descriptors), never runs out.
        wait_until(lambda: _closed_by_server(socks) >= HALF_OPEN - 512, 60, interval=0.2)
        assert _open_fds(node.proc) < 1024 - 256
        with NodeConnection(node.url, secret) as conn:            # the normal client, its normal timeout
            for _ in range(20):
                status, body = conn.request("GET", "/v1/node")
                assert status == 200 and b'"name": "n0"' in body, (status, body)
        more = _half_open(port, 200, sources)                     # the attack goes on: still served
        socks += more
        with NodeConnection(node.url, secret) as conn:
            assert conn.request("GET", "/v1/node")[0] == 200
    finally:
        for s in socks:
            s.close()
    growth = len(node.proc.stderr()) - before
    assert growth < LOG_BUDGET, node.proc.stderr()[-3000:]
    assert "Traceback" not in node.proc.stderr()


def test_half_open_tls_handshakes_do_not_starve_a_node(cluster: Cluster, secret: bytes,
                                                       secret_file: Path) -> None:
    """asyncio's TLS server holds a connection that never finishes its handshake for 60 s, unseen
    by the connection caps: here each is counted from its accept and the oldest dropped."""
    tls_dir = cluster.tmp / "config" / "geryon" / "tls"
    made = subprocess.run([*GERYON, "init", "--tls", "--secret-file", str(secret_file), "--tls-dir", str(tls_dir)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    use_cluster_tls(tls_dir / "ca.pem")
    try:
        node = cluster.start_node("n0", register=False, prefix=PRLIMIT)
        assert node.url.startswith("https://")
        port = _port(node.url)
        before = len(node.proc.stderr())
        # Half a TLS record header each: the handshake waits for the rest, forever.
        socks = _half_open(port, HALF_OPEN, ["127.0.0.2"], b"\x16\x03\x01\x02")
        try:
            wait_until(lambda: _closed_by_server(socks) >= HALF_OPEN - 512, 60, interval=0.2)
            assert _open_fds(node.proc) < 1024 - 256
            with NodeConnection(node.url, secret) as conn:        # the normal client, its normal timeout
                for _ in range(20):
                    status, body = conn.request("GET", "/v1/node")
                    assert status == 200 and b'"name": "n0"' in body, (status, body)
            socks += _half_open(port, 200, ["127.0.0.2"], b"\x16\x03\x01\x02")   # the attack goes on
            with NodeConnection(node.url, secret) as conn:
                assert conn.request("GET", "/v1/node")[0] == 200
            # Those still held are cut by the node's 10 s handshake timeout (asyncio's is 60 s).
            wait_until(lambda: _closed_by_server(socks) == len(socks), 45, interval=0.5)
        finally:
            for s in socks:
                s.close()
        growth = len(node.proc.stderr()) - before
        assert growth < LOG_BUDGET, node.proc.stderr()[-3000:]
        assert "Traceback" not in node.proc.stderr()
    finally:
        use_cluster_tls(None, enabled=False)


def test_half_open_connections_do_not_starve_the_registry(cluster: Cluster, secret: bytes) -> None:
    reg = cluster.start_registry(prefix=PRLIMIT)
    with cluster.client() as client:
        client.register("tcp!legit!1", {"svc": "legit"})
        before = len(reg.stderr())
        socks = _half_open(_port(cluster.registry_url), HALF_OPEN, [f"127.0.2.{i}" for i in range(1, 12)])
        try:
            wait_until(lambda: _closed_by_server(socks) >= HALF_OPEN - 512, 60, interval=0.2)
            assert _open_fds(reg) < 1024 - 256
            with cluster.client() as finder:
                for _ in range(50):
                    assert [s.name for s in finder.find({"svc": "legit"})] == ["tcp!legit!1"]
        finally:
            for s in socks:
                s.close()
        # The registering client's session was busy, never closed: its entry is still there.
        assert [s.name for s in client.find({"svc": "legit"})] == ["tcp!legit!1"]
    growth = len(reg.stderr()) - before
    assert growth < LOG_BUDGET, reg.stderr()[-3000:]
    assert "Traceback" not in reg.stderr()


LIMITS = ConnectionLimits().within(1024)
"""The caps of a server under PRLIMIT: 384 connections, 256 of them for one client address."""


def _is_closed(s: socket.socket) -> bool:
    return _closed_by_server([s]) == 1


def _one_address_is_held_to_its_cap(url: str, log: Callable[[], str], secret: bytes,
                                    target: str, answer: bytes) -> None:
    """One address floods the server past its whole cap with half-open requests; another's
    slow request (half sent before the flood) and normal clients must still be served."""
    port = _port(url)
    per_client = LIMITS.per_client
    assert per_client < LIMITS.max_connections
    before = len(log())
    request = _signed_request(Signer(secret), url, "GET", target, b"")
    slow = socket.socket()                                     # the other address's slow client
    slow.bind(("127.0.0.3", 0))
    slow.settimeout(30)
    slow.connect(("127.0.0.1", port))
    slow.sendall(request[:20])
    flood = _half_open(port, LIMITS.max_connections + 16, ["127.0.0.2"])
    try:
        # The flooding address keeps its newest `per_client`: its oldest were closed at once (its
        # own, not the other address's older, unfinished request, as the server cap alone would).
        wait_until(lambda: _closed_by_server(flood) >= len(flood) - per_client, 60, interval=0.2)
        held = [i for i, s in enumerate(flood) if not _is_closed(s)]
        assert held == list(range(len(flood) - per_client, len(flood))), (len(held), held[:3])
        slow.sendall(request[20:])
        got = slow.recv(65536)
        assert got.startswith(b"HTTP/1.1 200 ") and answer in got, got[:300]
        more = _half_open(port, 50, ["127.0.0.2"])                # the flood goes on: still its cap
        flood += more
        wait_until(lambda: _closed_by_server(flood) >= len(flood) - per_client, 60, interval=0.2)
    finally:
        slow.close()
        for s in flood:
            s.close()
    grown = log()[before:]
    lines = [line for line in grown.splitlines() if f"{per_client} connections from 127.0.0.2" in line]
    assert 1 <= len(lines) <= 2, grown[-3000:]                 # once per interval (60 s)
    assert len(grown) < LOG_BUDGET and "Traceback" not in grown, grown[-3000:]


def test_one_address_is_held_to_its_cap_on_a_node(cluster: Cluster, secret: bytes) -> None:
    # --idle-timeout 60: the flood is cut by the caps, not by its half-open requests' timeout.
    node = cluster.start_node("n0", register=False, prefix=PRLIMIT, extra=["--idle-timeout", "60"])
    _one_address_is_held_to_its_cap(node.url, node.proc.stderr, secret, "/v1/node", b'"name": "n0"')
    with NodeConnection(node.url, secret) as conn:                # a normal client, from 127.0.0.1
        assert conn.request("GET", "/v1/node")[0] == 200


def test_a_nodes_idle_timeout_is_its_own(cluster: Cluster) -> None:
    """`geryon node --idle-timeout`: a half-open request is cut after the node's own timeout, and
    a node told to wait longer than the default (10 s) still answers the request when it ends."""
    short = cluster.start_node("n-short", register=False, extra=["--idle-timeout", "1"])
    long = cluster.start_node("n-long", register=False, extra=["--idle-timeout", "3600"])
    opened = time.monotonic()
    [cut] = _half_open(_port(short.url), 1, ["127.0.0.1"])
    [kept] = _half_open(_port(long.url), 1, ["127.0.0.1"])
    try:
        cut.settimeout(60)
        try:
            assert cut.recv(4096) == b""                           # closed by the node, nothing sent
        except ConnectionResetError:
            pass
        # A window for what must not happen: the default timeout (10 s) would have cut `kept` by now.
        time.sleep(max(0.0, opened + 12 - time.monotonic()))
        kept.sendall(b"\r\n\r\n")
        assert kept.recv(4096).startswith(b"HTTP/1.1 401"), "the long-timeout node cut the request"
    finally:
        cut.close()
        kept.close()


def test_a_bad_idle_timeout_or_connection_cap_is_one_line(tmp_path: Path) -> None:
    for option, value in (("--idle-timeout", "0"), ("--idle-timeout", "-1"), ("--max-connections", "0")):
        done = subprocess.run([*GERYON, "node", "--standalone", option, value], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)})
        assert done.returncode == 2, done.stderr
        assert f"Invalid value for '{option}'" in done.stderr and "Traceback" not in done.stderr


def test_one_address_is_held_to_its_cap_on_the_registry(cluster: Cluster, secret: bytes) -> None:
    # --idle-timeout 60: the flood is cut by the caps, not by its half-open requests' timeout.
    reg = cluster.start_registry(prefix=PRLIMIT, extra=["--idle-timeout", "60"])
    with cluster.client() as client:
        client.register("tcp!legit!1", {"svc": "legit"})
        _one_address_is_held_to_its_cap(cluster.registry_url, reg.stderr, secret, "/v1/index", b"tcp!legit!1")
        with cluster.client() as finder:                          # a normal client, from 127.0.0.1
            assert [s.name for s in finder.find({"svc": "legit"})] == ["tcp!legit!1"]


def _signed_request(signer: Signer, url: str, method: str, target: str, body: bytes) -> bytes:
    head = signer.headers_sync(url, method, target, body)
    return (f"{method} {target} HTTP/1.1\r\nHost: {url.split('://', 1)[1]}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in head.items() if k != "Host")
            + f"Content-Length: {len(body)}\r\n\r\n").encode()


def _send_and_close(port: int, data: bytes, read: bool = False) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        if read:
            s.recv(4096)


ABORTED = 2000


def test_aborted_bodies_cost_a_few_log_lines(cluster: Cluster, secret: bytes) -> None:
    node = cluster.start_node("n0", register=False)
    port = _port(node.url)
    signer = Signer(secret)
    body = b'{"op": "listdir", "args": {"path": "/"}}'.ljust(100)
    before = len(node.proc.stderr())
    for _ in range(ABORTED):
        # Signed, Content-Length 100, 10 bytes of it, then gone.
        _send_and_close(port, _signed_request(signer, node.url, "POST", "/v1/chunks/c0/op", body) + body[:10])
    for _ in range(ABORTED):                                     # and unsigned ones
        _send_and_close(port, b"PUT /v1/chunks/c0/file?path=/x HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: 100\r\n\r\n0123456789")
    with NodeConnection(node.url, secret) as conn:
        status, _ = conn.request("POST", "/v1/chunks/c0/op", b'{"op": "listdir", "args": {"path": "/"}}')
        assert status == 200
    log = node.proc.stderr()[before:]
    assert len(log) < LOG_BUDGET and len(log.splitlines()) <= 6, log[-3000:]
    assert "Traceback" not in log and "aborted" in log, log


def _trickle(port: int, head: bytes, body: bytes, every: float = 0.5) -> tuple[int, bytes]:
    """Send `head`, then `body` a byte every `every` seconds until the server answers or closes:
    (bytes of the body sent, the answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        s.settimeout(every)
        sent = 0
        while sent < len(body):
            try:
                answer = s.recv(4096)
                return sent, answer
            except TimeoutError:
                pass
            except OSError:
                return sent, b""
            try:
                s.sendall(body[sent:sent + 1])
            except OSError:
                return sent, b""
            sent += 1
        s.settimeout(30)
        return sent, s.recv(4096)


def test_a_trickled_control_body_is_cut_after_a_bound(cluster: Cluster, secret: bytes) -> None:
    node = cluster.start_node("n0", register=False)
    port = _port(node.url)
    body = b'{"op": "listdir", "args": {"path": "/"}}'.ljust(100)    # 50 s at a byte per 0.5 s
    before = len(node.proc.stderr())
    sent, answer = _trickle(port, _signed_request(Signer(secret), node.url, "POST", "/v1/chunks/c0/op", body), body)
    assert sent < len(body) and answer.startswith(b"HTTP/1.1 408 "), (sent, answer)
    # Unsigned: refused from the headers, before any of the body is waited for.
    sent, answer = _trickle(port, b"POST /v1/chunks/c0/op HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: 100\r\n\r\n", body)
    assert sent < 10 and answer.startswith(b"HTTP/1.1 401 "), (sent, answer)
    with NodeConnection(node.url, secret) as conn:
        assert conn.request("POST", "/v1/chunks/c0/op", body.strip())[0] == 200
    log = node.proc.stderr()[before:]
    assert "not sent within" in log and len(log.splitlines()) <= 4 and "Traceback" not in log, log


def test_refused_signatures_cost_a_few_log_lines(cluster: Cluster, secret: bytes) -> None:
    reg = cluster.start_registry()
    node = cluster.start_node("n0", register=False)
    signer = Signer(secret)
    for url, target in ((node.url, "/v1/node"), (cluster.registry_url, "/v1/index")):
        proc = node.proc if url == node.url else reg
        before = len(proc.stderr())
        head = signer.headers_sync(url, "GET", target)
        for i in range(ABORTED):
            # Wrong signatures, each claiming another server: a new reason every time.
            lines = {**head, HEADER_SERVER: f"attacker-{i} x y", "X-Geryon-Signature": f"{i:064x}"}
            _send_and_close(_port(url), (f"GET {target} HTTP/1.1\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in lines.items()) + "\r\n").encode(), read=True)
        log = proc.stderr()[before:]
        assert len(log.splitlines()) <= 3 and "refused" in log, log[-3000:]
    with NodeConnection(node.url, secret) as conn:
        assert conn.request("GET", "/v1/node")[0] == 200
    with cluster.client() as client:
        assert client.index() == []


def test_the_rate_log_writes_one_line_per_client_per_interval() -> None:
    rate = RateLog(interval=60, burst=3)
    assert rate.allow("a", 0) == 0
    assert [rate.allow("a", t) for t in (1, 2, 59)] == [None, None, None]
    assert rate.allow("a", 60) == 3                  # the next line says how many were not written
    assert rate.allow("b", 60) == 0 and rate.allow("c", 61) == 0
    assert rate.allow("d", 62) is None               # over the burst of 3 lines per interval
    assert rate.allow("d", 121) == 1                 # ... and is counted in the next line
    small = RateLog(interval=60, max_keys=2)
    for key in "xyz":
        small.allow(key, 0)
    assert len(small._last) == 2


def test_limits_keep_half_the_descriptors_for_files() -> None:
    assert ConnectionLimits().within(1024).max_connections == 512 - 2 * ACCEPT_BURST
    assert ConnectionLimits().within(4096).max_connections == 512
    assert ConnectionLimits(per_client=256).within(100).per_client == 16
    assert ConnectionLimits().within(10).max_connections == 16
    assert ConnectionLimits().within(1 << 20).max_connections == 512
