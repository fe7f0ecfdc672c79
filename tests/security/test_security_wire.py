"""Replays of a captured signed request (issue 11, items 1, 2 and 7), against real node processes.

A request is signed with the client code for node n0 and its headers kept, as a capture
would; replayed to n1, to n0 a second time, to n0 after a restart, and with a signed
header changed in flight, each is refused (401) and nothing is done.
"""
from __future__ import annotations

import http.client
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from node_helpers import Cluster  # noqa: E402

from registry.signer import IDENTITIES, Signer  # noqa: E402


@pytest.fixture
def cluster(tmp_path: Path, secret_file: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, secret_file)
    try:
        yield c
    finally:
        c.stop()


def _send(url: str, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
    try:
        conn.request(method, target, body=body or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_a_captured_request_is_refused_by_another_node_twice_and_after_a_restart(
        cluster: Cluster, secret: bytes) -> None:
    n0 = cluster.start_node("n0", ["c0"], register=False)
    n1 = cluster.start_node("n1", ["c0"], register=False)
    body = b'{"op": "makedir", "args": {"path": "/made"}}'
    target = "/v1/chunks/c0/op"
    captured = Signer(secret).headers_sync(n0.url, "POST", target, body)
    status, reply = _send(n1.url, "POST", target, captured, body)
    assert status == 401 and b"another server" in reply
    assert not (n1.chunks["c0"] / "made").exists()
    assert _send(n0.url, "POST", target, captured, body)[0] == 200       # the real one
    status, reply = _send(n0.url, "POST", target, captured, body)
    assert status == 401 and b"replayed" in reply
    (n0.chunks["c0"] / "made").rmdir()
    fresh = Signer(secret).headers_sync(n0.url, "POST", target, body)
    n0.kill()                                   # the same node, started again: a new instance
    n0 = cluster.start_node("n0", ["c0"], register=False)
    status, reply = _send(n0.url, "POST", target, fresh, body)
    assert status == 401 and b"wrong server instance" in reply
    assert not (n0.chunks["c0"] / "made").exists()
    IDENTITIES.forget(n0.url)


def test_signed_headers_changed_in_flight_are_refused(cluster: Cluster, secret: bytes) -> None:
    n0 = cluster.start_node("n0", ["c0"], register=False)
    (n0.chunks["c0"] / "f").write_bytes(b"0123456789")
    target = "/v1/chunks/c0/file?path=/f"
    for name, value in (("Range", "bytes=0-9"), ("X-Geryon-Owner", "mallory"), ("X-Geryon-Client", "x")):
        headers = Signer(secret).headers_sync(n0.url, "GET", target,
                                              headers={"Range": "bytes=0-1", "X-Geryon-Owner": "alice",
                                                       "X-Geryon-Client": "c1"})
        status, reply = _send(n0.url, "GET", target, {**headers, name: value})
        assert status == 401 and b"bad signature" in reply, name
    headers = Signer(secret).headers_sync(n0.url, "GET", target, headers={"Range": "bytes=0-1"})
    assert _send(n0.url, "GET", target, headers) == (206, b"01")


def test_a_client_whose_cached_identity_names_another_server_learns_the_new_one(
        cluster: Cluster, secret: bytes) -> None:
    """A port once held by the registry (or another node) now serves node n0: the client's cached
    identity for that address is stale, so n0 says so and the client asks again (CI saw rcpu fail
    with 'authentication failed' when a node got a port a registry of an earlier test had held)."""
    import io

    from geryon.cluster.rcpu import Rcpu
    from registry.auth import ServerIdentity

    cluster.start_registry()
    n0 = cluster.start_node("n0", [])
    with cluster.client() as reg:
        from node_helpers import wait_until
        wait_until(lambda: len(reg.find({"svc": "rstyx"})) == 1, 10)
        real = Signer(secret).identity_sync(n0.url)
        IDENTITIES.put(n0.url, ServerIdentity("registry", real.cluster, "9" * 32))
        try:
            out, err = io.BytesIO(), io.BytesIO()
            with Rcpu(reg, secret) as runner:
                result = runner.run("echo still here", (), stdout=out, stderr=err)
        finally:
            IDENTITIES.forget(n0.url)
    assert result.status == 0, err.getvalue()
    assert out.getvalue() == b"still here\n"
