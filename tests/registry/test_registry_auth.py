"""The cluster secret, request signatures, and refusals that change nothing."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from registry.auth import (HEADER_SERVER, HEADER_SIGNATURE, BodyDigest, NonceCache, ServerIdentity, Verifier,
                           WrongInstance, cluster_id, create_secret, load_secret, sign_headers)
from registry.signer import Signer
from registry.client import RegistryClient
from registry.errors import AuthenticationFailed, RegistryError


def test_secret_file_is_private_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "geryon" / "secret"
    secret = create_secret(path)
    assert len(secret) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(path) == secret
    with pytest.raises(RegistryError, match="exists"):
        create_secret(path)
    assert create_secret(path, overwrite=True) != secret
    os.chmod(path, 0o644)
    with pytest.raises(RegistryError, match="accessible by others"):
        load_secret(path)
    short = tmp_path / "short"
    short.write_text("abcd")
    short.chmod(0o600)
    with pytest.raises(RegistryError, match="shorter"):
        load_secret(short)


ME = ServerIdentity("node:n0", "c0ffee", "1" * 32)


def _sign(secret: bytes, method: str, path: str, body: bytes = b"", *, now: float,
          server: ServerIdentity = ME, headers: dict[str, str] | None = None) -> dict[str, str]:
    return sign_headers(secret, method, path, server=server, host="h:1", body=body, headers=headers, now=now)


def _check(v: Verifier, method: str, path: str, body: bytes, h: dict[str, str], now: float) -> None:
    v.verify(method, path, h, now)
    d = BodyDigest.of(h)
    d.update(body)
    d.verify()


def test_verify_accepts_once_and_refuses_wrong_stale_replayed() -> None:
    secret = b"k" * 32
    v = Verifier(secret, ME, window=30)
    h = _sign(secret, "POST", "/v1/find", b"{}", now=1000.0)
    _check(v, "POST", "/v1/find", b"{}", h, now=1001.0)
    with pytest.raises(AuthenticationFailed, match="replayed"):
        v.verify("POST", "/v1/find", h, now=1002.0)
    for method, path in (("GET", "/v1/find"), ("POST", "/v1/index")):
        h = _sign(secret, "POST", "/v1/find", b"{}", now=1000.0)
        with pytest.raises(AuthenticationFailed, match="bad signature"):
            v.verify(method, path, h, now=1000.0)
    h = _sign(secret, "POST", "/v1/find", b"{}", now=1000.0)
    with pytest.raises(AuthenticationFailed, match="body does not match"):
        _check(v, "POST", "/v1/find", b"{ }", h, now=1000.0)
    h = _sign(b"x" * 32, "POST", "/v1/find", b"{}", now=1000.0)
    with pytest.raises(AuthenticationFailed, match="bad signature"):
        v.verify("POST", "/v1/find", h, now=1000.0)
    h = _sign(secret, "POST", "/v1/find", b"{}", now=1000.0)
    with pytest.raises(AuthenticationFailed, match="stale"):
        v.verify("POST", "/v1/find", h, now=1031.0)
    with pytest.raises(AuthenticationFailed, match="not signed"):
        v.verify("POST", "/v1/find", {}, now=1000.0)


def test_a_signature_names_its_server_its_run_its_host_and_its_headers() -> None:
    secret = b"k" * 32
    v = Verifier(secret, ME, window=30)
    other_node = ServerIdentity("node:n1", ME.cluster, "2" * 32)
    with pytest.raises(AuthenticationFailed, match="another server"):
        v.verify("GET", "/v1/node", _sign(secret, "GET", "/v1/node", now=1000.0, server=other_node), 1000.0)
    earlier = ServerIdentity(ME.server, ME.cluster, "3" * 32)
    with pytest.raises(WrongInstance, match="wrong server instance"):
        v.verify("GET", "/v1/node", _sign(secret, "GET", "/v1/node", now=1000.0, server=earlier), 1000.0)
    # A claim edited to look like ours does not help: the signature names the real target.
    forged = _sign(secret, "GET", "/v1/node", now=1000.0, server=earlier) | {HEADER_SERVER: ME.claim}
    with pytest.raises(AuthenticationFailed, match="bad signature"):
        v.verify("GET", "/v1/node", forged, 1000.0)
    for name, value in (("Host", "elsewhere:1"), ("X-Geryon-Owner", "mallory"), ("X-Geryon-Client", "x"),
                        ("Range", "bytes=0-9"), ("Content-Type", "text/plain")):
        h = _sign(secret, "GET", "/v1/f", now=1000.0, headers={"X-Geryon-Owner": "alice", "Range": "bytes=0-1"})
        with pytest.raises(AuthenticationFailed, match="bad signature"):
            v.verify("GET", "/v1/f", h | {name: value}, 1000.0)
    h = _sign(secret, "GET", "/v1/f", now=1000.0, headers={"X-Geryon-Owner": "alice"})
    dropped = {k: val for k, val in h.items() if k != "X-Geryon-Owner"}
    with pytest.raises(AuthenticationFailed, match="bad signature"):
        v.verify("GET", "/v1/f", dropped, 1000.0)
    v.verify("GET", "/v1/f", h, 1000.0)


def test_nonce_cache_forgets_after_ttl_and_is_bounded() -> None:
    c = NonceCache(ttl=60, max_entries=2)
    assert c.add("a", 0) and not c.add("a", 1)
    assert c.add("b", 1) and not c.add("c", 2)        # full
    assert c.add("c", 60.5) and len(c) == 2            # "a" expired, "b" not yet
    assert "b" in c and "a" not in c


def test_a_nonce_is_kept_while_its_timestamp_is_in_the_window() -> None:
    secret = b"k" * 32
    v = Verifier(secret, ME, window=30)
    h = _sign(secret, "GET", "/", now=1029.0)            # a client clock 29 s ahead
    v.verify("GET", "/", h, now=1000.0)
    with pytest.raises(AuthenticationFailed, match="replayed"):
        v.verify("GET", "/", h, now=1058.0)               # still inside its window


def test_cluster_id_does_not_reveal_the_secret() -> None:
    cid = cluster_id(b"s" * 32)
    assert len(cid) == 16 and cid != cluster_id(b"t" * 32) and "s" * 8 not in cid


async def _raw(url: str, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url + path, data=body or None, headers=headers) as resp:
            return resp.status, await resp.read()


def test_server_refuses_wrong_missing_and_replayed_signatures(
        serve_thread: Callable[..., object], secret: bytes, caplog: pytest.LogCaptureFixture) -> None:
    server = serve_thread(secret=secret)
    url = server.url  # type: ignore[attr-defined]
    with RegistryClient(url, secret=secret, owner="alice") as good:
        good.register("x", {"a": "1"})
        before = [s.line() for s in good.index()]

        with RegistryClient(url, secret=os.urandom(32), owner="alice", request_timeout=1) as wrong:
            with pytest.raises(AuthenticationFailed):
                wrong.index()
            with pytest.raises(AuthenticationFailed):
                wrong.unregister("x")
            with pytest.raises(RegistryError, match="authentication failed"):
                wrong.register("y")
        with RegistryClient(url, secret=None, owner="alice", request_timeout=1) as none:
            with pytest.raises(AuthenticationFailed):
                none.update("x", {"a": "2"})

        body = json.dumps({"name": "x", "attrs": [["a", "3"]]}).encode()
        signer = Signer(secret)
        owner = {"X-Geryon-Owner": "alice"}
        headers = signer.headers_sync(url, "POST", "/v1/update", body, headers=owner)
        status, reply = asyncio.run(_raw(url, "POST", "/v1/update",
                                         json.dumps({"name": "x", "attrs": [["a", "4"]]}).encode(), headers))
        assert status == 401 and b"body does not match" in reply    # body swapped
        headers = signer.headers_sync(url, "POST", "/v1/update", body, headers=owner)
        assert asyncio.run(_raw(url, "POST", "/v1/update", body, headers))[0] == 200
        status, reply = asyncio.run(_raw(url, "POST", "/v1/update", body, headers))
        assert status == 401 and b"replayed" in reply
        ident = signer.identity_sync(url)
        stale = sign_headers(secret, "POST", "/v1/update", server=ident, host=url.split("//")[1], body=body,
                             headers=owner, now=0.0)
        assert asyncio.run(_raw(url, "POST", "/v1/update", body, stale))[0] == 401
        bad = dict(headers, **{HEADER_SIGNATURE: "0" * 64})
        assert asyncio.run(_raw(url, "POST", "/v1/unregister", b'{"name":"x"}', bad))[0] == 401

        assert [s.line() for s in good.index()] == [before[0].replace("a 1", "a 3")]
    refusals = [r for r in caplog.records if r.name == "registry.auth" and r.levelno == logging.WARNING]
    assert len({r.getMessage() for r in refusals}) == len(refusals)      # each logged once


def test_a_server_without_a_secret_does_not_start() -> None:
    from registry.server import RegistryServer, ServerConfig

    for missing in (b"", b"short"):
        with pytest.raises(RegistryError, match="a cluster secret is required"):
            RegistryServer(ServerConfig(port=0, secret=missing, mdns=False))
