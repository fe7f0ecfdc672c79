"""Rotating the cluster secret on a running cluster (issue 11): no restarts, a grace for the old one.

`geryon init --rotate` on the servers' secret file: the registry and a node (real
processes, started before it) then accept requests and WebSocket handshakes signed with
the old secret until its grace ends and refuse them after, saying so once in their logs;
a client with the new secret works throughout, and so do the servers' own connections.
The grace's end is played by giving `secret.old` an expiry a moment away (the file is the
servers' only source) and waiting until it has passed: no wall-clock bound is asserted.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from geryon.cli import main
from registry.secretfile import (Keyring, OldSecret, load_old_secret, load_secret, old_secret_path,
                                 rotate_secret, watch_secret)
from registry.signer import IDENTITIES, Signer
from tests.node.node_helpers import Cluster, wait_until


def _post(url: str, secret: bytes, target: str, doc: object) -> tuple[int, bytes]:
    """One signed POST with the stdlib client; (status, body)."""
    from geryon.net.connection import NodeConnection
    with NodeConnection(url, secret) as conn:
        return conn.request("POST", target, json.dumps(doc).encode(), {"Content-Type": "application/json"})


async def _rcpu(url: str, secret: bytes, cmd: str) -> tuple[bytes, object]:
    """Run `cmd` over `/v1/cpu/run` with an authenticated channel; (stdout, exit status)."""
    out = b""
    async with aiohttp.ClientSession() as http:
        ws = await Signer(secret).connect(http, url, "/v1/cpu/run")
        async with ws:
            await ws.send_json({"cmd": cmd})
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == b"\x01":
                    out += msg.data[1:]
                elif msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("op") == "exit":
                    return out, json.loads(msg.data)["status"]
    raise AssertionError(f"no exit from {url}")


def _rcpu_refused(url: str, secret: bytes) -> int:
    try:
        asyncio.run(_rcpu(url, secret, "true"))
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    raise AssertionError("the handshake was accepted")


def _find(cluster: Cluster, secret: bytes) -> tuple[int, bytes]:
    return _post(cluster.registry_url, secret, "/v1/find", {"query": [["node", "*"]]})


def _set_expiry(secret_file: Path, expires: float) -> None:
    old = load_old_secret(secret_file)
    assert old is not None
    path = old_secret_path(secret_file)
    tmp = path.with_name(".rewrite")
    tmp.write_text(f"{old.secret.hex()}\nexpires {expires:.3f}\n")
    tmp.chmod(0o600)
    os.replace(tmp, path)


def test_a_rotation_on_a_running_cluster_honours_the_grace_then_refuses_the_old_secret(
        cluster: Cluster, secret_file: Path) -> None:
    reg = cluster.start_registry()
    n0 = cluster.start_node("n0", ["c0"])
    old = load_secret(secret_file)                 # a client that never got the new secret
    assert _post(n0.url, old, "/v1/chunks/c0/op", {"op": "listdir", "args": {"path": "/"}})[0] == 200

    result = CliRunner().invoke(main, ["init", "--rotate", "--grace", "1h", "--secret-file", str(secret_file)])
    assert result.exit_code == 0, result.output
    new = load_secret(secret_file)
    assert new != old

    # Within the grace: both secrets, for plain requests and WebSocket handshakes, on both servers.
    for secret in (old, new):
        assert _post(n0.url, secret, "/v1/chunks/c0/op", {"op": "listdir", "args": {"path": "/"}})[0] == 200
        assert _find(cluster, secret)[0] == 200
        assert asyncio.run(_rcpu(n0.url, secret, "echo hi")) == (b"hi\n", 0)
    # The servers noticed, with no restart (at most a second's look at the file's stat).
    wait_until(lambda: "signing with the new one" in n0.proc.stderr(), 30)
    wait_until(lambda: "signing with the new one" in reg.stderr(), 30)

    # The grace ends (a moment from now): the old secret is refused, the new one still works.
    _set_expiry(secret_file, time.time() + 1.0)
    wait_until(lambda: _post(n0.url, old, "/v1/chunks/c0/op", {"op": "listdir", "args": {"path": "/"}})[0] == 401,
               30, interval=0.2)
    status, reply = _post(n0.url, old, "/v1/chunks/c0/op", {"op": "makedir", "args": {"path": "/late"}})
    assert status == 401 and b"previous cluster secret" in reply
    assert not (n0.chunks["c0"] / "late").exists()
    wait_until(lambda: _find(cluster, old)[0] == 401, 30, interval=0.2)
    assert _rcpu_refused(n0.url, old) == 401
    assert _post(n0.url, new, "/v1/chunks/c0/op", {"op": "listdir", "args": {"path": "/"}})[0] == 200
    assert _find(cluster, new)[0] == 200
    assert asyncio.run(_rcpu(n0.url, new, "echo still")) == (b"still\n", 0)
    # Said once per server, in one line.
    for proc in (n0.proc, reg):
        wait_until(lambda p=proc: "previous cluster secret" in p.stderr() and "expired" in p.stderr(), 30)
        assert proc.stderr().count("it is refused from now on") == 1, proc.stderr()

    # The node's own connections sign with the new secret: its registry session, opened under
    # the old one, was closed by the registry when the grace ended, and is back under the new one.
    wait_until(lambda: "no longer accepted" in reg.stderr(), 30)
    wait_until(lambda: any(s.get("host") == "n0" for s in _services(cluster)), 30, interval=0.2)
    IDENTITIES.forget(n0.url)


def _services(cluster: Cluster) -> list:
    with cluster.client() as client:           # loads the (new) secret from the file
        return client.find({"svc": "rstyx"})


def test_a_connection_opened_with_the_old_secret_is_closed_when_its_grace_ends(
        cluster: Cluster, secret_file: Path) -> None:
    n0 = cluster.start_node("n0", ["c0"], register=False)
    old = load_secret(secret_file)
    rotate_secret(secret_file, grace=3600)

    async def play() -> int | None:
        async with aiohttp.ClientSession() as http:
            ws = await Signer(old).connect(http, n0.url, "/v1/cpu/run")    # within the grace
            async with ws:
                await ws.send_json({"cmd": "sleep 60"})
                assert json.loads((await ws.receive(timeout=30)).data)["op"] == "started"
                _set_expiry(secret_file, time.time() - 1)                   # the grace is over
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:   # frames are fine until the node looks again
                    try:
                        await ws.send_json({"op": "noop"})
                        msg = await ws.receive(timeout=0.3)
                    except asyncio.TimeoutError:
                        continue
                    except ConnectionError:
                        break
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                        break
                return ws.ws.close_code

    assert asyncio.run(play()) == 1008
    wait_until(lambda: "opened with a cluster secret no longer accepted" in n0.proc.stderr(), 30)
    IDENTITIES.forget(n0.url)


# -- the keyring alone: time is a parameter ---------------------------------------------------
def test_the_keyring_follows_the_files_and_the_grace(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    CliRunner().invoke(main, ["init", "--secret-file", str(path)])
    first = load_secret(path)
    ticks = [0.0]
    ring = Keyring(path, recheck=1.0, clock=lambda: ticks[0])
    assert ring.current() == first and ring.accepted(0.0) == (first,)
    rotate_secret(path, grace=10, now=1000.0)
    second = load_secret(path)
    assert ring.current() == first                 # not looked again yet
    ticks[0] = 1.5
    assert ring.current() == second
    assert ring.accepted(1005.0) == (second, first)
    assert ring.accepted(1010.0) == (second,) and ring.expired(1010.0) == OldSecret(first, 1010.0)
    # A half-written secret file keeps the secrets in use.
    path.write_text("short\n")
    ticks[0] = 3.0
    assert ring.current() == second


def test_a_library_client_refused_with_the_expired_secret_says_why(cluster: Cluster, secret_file: Path) -> None:
    n0 = cluster.start_node("n0", ["c0"], register=False)
    old = load_secret(secret_file)
    rotate_secret(secret_file, grace=-1)          # a grace already over: a hard switch
    wait_until(lambda: _post(n0.url, old, "/v1/chunks/c0/op",
                             {"op": "listdir", "args": {"path": "/"}})[0] == 401, 30, interval=0.2)
    from geryon.disks.remote import NodeUnavailable, RemoteFS
    with pytest.raises(NodeUnavailable, match="previous cluster secret"):
        RemoteFS(n0.url, "c0", old).listdir("/")
    assert RemoteFS(n0.url, "c0", watch_secret(secret_file)).listdir("/") == []
    IDENTITIES.forget(n0.url)


def test_zeroconf_announces_the_new_cluster_id_after_a_rotation(cluster: Cluster, secret_file: Path) -> None:
    """Clients browse for the cluster id of the secret they hold: after `geryon init --rotate`
    the running registry is found under the new id (and no longer under the old) with no restart."""
    import subprocess
    import sys
    from registry.auth import cluster_id
    browse = [sys.executable, "-c", "import sys; from registry.discovery import discover; "
              "print(discover(float(sys.argv[1]), cluster=sys.argv[2], interfaces=['127.0.0.1']))"]

    def found(cid: str) -> str:
        done = subprocess.run([*browse, "3", cid], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    cluster.start_registry(mdns_interface="127.0.0.1")
    old = cluster_id(load_secret(secret_file))
    wait_until(lambda: cluster.registry_url in found(old), 60, interval=0.5)
    result = CliRunner().invoke(main, ["init", "--rotate", "--grace", "1h", "--secret-file", str(secret_file)])
    assert result.exit_code == 0, result.output
    new = cluster_id(load_secret(secret_file))
    assert new != old
    wait_until(lambda: cluster.registry_url in found(new), 60, interval=0.5)
    assert found(old) == "[]"
