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

from registry.auth import (HEADER_SIGNATURE, NonceCache, Verifier, cluster_id, create_secret,
                           load_secret, sign_headers)
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


def test_verify_accepts_once_and_refuses_wrong_stale_replayed() -> None:
    secret = b"k" * 32
    v = Verifier(secret, window=30)
    h = sign_headers(secret, "POST", "/v1/find", b"{}", now=1000.0)
    v.verify("POST", "/v1/find", b"{}", h, now=1001.0)
    with pytest.raises(AuthenticationFailed, match="replayed"):
        v.verify("POST", "/v1/find", b"{}", h, now=1002.0)
    for method, path, body in (("GET", "/v1/find", b"{}"), ("POST", "/v1/index", b"{}"),
                               ("POST", "/v1/find", b"{ }")):
        h = sign_headers(secret, "POST", "/v1/find", b"{}", now=1000.0)
        with pytest.raises(AuthenticationFailed, match="bad signature"):
            v.verify(method, path, body, h, now=1000.0)
    h = sign_headers(b"x" * 32, "POST", "/v1/find", b"{}", now=1000.0)
    with pytest.raises(AuthenticationFailed, match="bad signature"):
        v.verify("POST", "/v1/find", b"{}", h, now=1000.0)
    h = sign_headers(secret, "POST", "/v1/find", b"{}", now=1000.0)
    with pytest.raises(AuthenticationFailed, match="stale"):
        v.verify("POST", "/v1/find", b"{}", h, now=1031.0)
    with pytest.raises(AuthenticationFailed, match="not signed"):
        v.verify("POST", "/v1/find", b"{}", {}, now=1000.0)


def test_nonce_cache_forgets_after_ttl_and_is_bounded() -> None:
    c = NonceCache(ttl=60, max_entries=2)
    assert c.add("a", 0) and not c.add("a", 1)
    assert c.add("b", 1) and not c.add("c", 2)        # full
    assert c.add("c", 60.5) and len(c) == 2            # "a" expired, "b" not yet
    assert "b" in c and "a" not in c


def test_a_nonce_is_kept_while_its_timestamp_is_in_the_window() -> None:
    secret = b"k" * 32
    v = Verifier(secret, window=30)
    h = sign_headers(secret, "GET", "/", now=1029.0)    # a client clock 29 s ahead
    v.verify("GET", "/", b"", h, now=1000.0)
    with pytest.raises(AuthenticationFailed, match="replayed"):
        v.verify("GET", "/", b"", h, now=1058.0)          # still inside its window


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
        headers = sign_headers(secret, "POST", "/v1/update", body) | {"X-Geryon-Owner": "alice"}
        assert asyncio.run(_raw(url, "POST", "/v1/update", body, headers))[0] == 200
        status, reply = asyncio.run(_raw(url, "POST", "/v1/update",
                                         json.dumps({"name": "x", "attrs": [["a", "4"]]}).encode(), headers))
        assert status == 401 and b"bad signature" in reply          # body swapped
        status, reply = asyncio.run(_raw(url, "POST", "/v1/update", body, headers))
        assert status == 401 and b"replayed" in reply
        stale = sign_headers(secret, "POST", "/v1/update", body, now=0.0) | {"X-Geryon-Owner": "alice"}
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
