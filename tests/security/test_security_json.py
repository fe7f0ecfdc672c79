"""Deep, huge and mistyped JSON on every route of both servers: 400 and one line, never a 500."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from registry import jsondoc
from registry.signer import Signer
from tests.node.node_helpers import Cluster
from tests.security.security_helpers import deep, signed

GERYON = [sys.executable, "-c", "from geryon.cli import main; main()"]

BAD_BODIES = [deep(5000), b"[" * 60_000, b'{"query": 5}', b'{"name": 5}', b'{"name": ["x"]}', b"[1]",
              b'{"op": 5}', b'{"capacity": "big"}', b'{"staged": 1, "final": {}}', b"{not json", b"\xff\xfe"]


def _one_line_400(status: int, doc: Any) -> None:
    assert status == 400, (status, doc)
    assert isinstance(doc, dict) and doc.get("kind") == "bad", doc
    assert "\n" not in doc["error"] and len(doc["error"]) < 300, doc


def test_the_validator_refuses_depth_size_and_types_in_one_line() -> None:
    with pytest.raises(jsondoc.BadJSON, match="nested 5000 deep"):
        jsondoc.loads(b"[" * 5000 + b"]" * 5000)
    with pytest.raises(jsondoc.BadJSON, match="over the limit of 10"):
        jsondoc.loads(b"[1, 2, 3, 4, 5]", max_bytes=10)
    with pytest.raises(jsondoc.BadJSON, match='"query" must be a list of'):
        jsondoc.load_object(b'{"query": 5}', {"query": jsondoc.PAIRS})
    # Brackets inside strings are not nesting; a document at the limit passes.
    assert jsondoc.loads(json.dumps({"a": "[" * 5000}).encode()) == {"a": "[" * 5000}
    assert jsondoc.depth_of(b'["\\"[[[", {"x": []}]') == 3
    assert jsondoc.loads(b"[" * 32 + b"]" * 32) is not None


def test_registry_routes_answer_400_to_bad_json(cluster: Cluster, secret: bytes) -> None:
    reg = cluster.start_registry()
    for path in ("/v1/find", "/v1/update", "/v1/unregister"):
        for body in BAD_BODIES:
            status, doc = signed(secret, cluster.registry_url, "POST", path, body)
            if path == "/v1/find" and body in (b'{"name": 5}', b'{"name": ["x"]}', b'{"op": 5}',
                                               b'{"capacity": "big"}', b'{"staged": 1, "final": {}}'):
                assert status == 200, (path, body, doc)       # unknown fields are allowed
                continue
            _one_line_400(status, doc)
    status, doc = signed(secret, cluster.registry_url, "POST", "/v1/find", b'{"query": [["svc", "x"]]}')
    assert status == 200 and doc["services"] == []
    assert "Traceback" not in reg.stderr() and "RecursionError" not in reg.stderr()


async def _session_replies(url: str, secret: bytes, frames: list[str]) -> list[dict[str, Any]]:
    """Open a registry session as a real client (signed upgrade, channel handshake), send `frames`."""
    ids = {"X-Geryon-Client": "attacker-1", "X-Geryon-Owner": "attacker"}
    async with aiohttp.ClientSession() as http:
        async with await Signer(secret).connect(http, url, "/v1/session", headers=ids) as ws:
            hello = json.loads((await ws.receive(timeout=10)).data)
            assert hello["op"] == "hello", hello
            replies = []
            for frame in frames:
                await ws.send_str(frame)
                replies.append(json.loads((await ws.receive(timeout=10)).data))
            return replies


def test_registry_session_messages_refuse_bad_json(cluster: Cluster, secret: bytes) -> None:
    reg = cluster.start_registry()
    frames = ["[" * 5000 + "]" * 5000, json.dumps({"op": "register", "name": "x", "attrs": 5}),
              json.dumps({"op": 5}), json.dumps({"op": "register", "name": ["x"]}), '{"op": "ping"',
              json.dumps({"op": "register", "name": "ok", "attrs": [["a", "b"]]})]
    replies = asyncio.run(_session_replies(cluster.registry_url, secret, frames))
    for reply in replies[:-1]:
        assert reply.get("kind") == "bad" and "\n" not in reply["error"], reply
    assert "nested 5000 deep" in replies[0]["error"], replies[0]
    assert replies[-1].get("ok") is True, replies[-1]
    assert "Traceback" not in reg.stderr() and "RecursionError" not in reg.stderr()


async def _handshake_with(url: str, secret: bytes, path: str, proof: str) -> str:
    """Send `proof` as the first frame instead of a MAC'd one; how the server closed."""
    signer = Signer(secret)
    async with aiohttp.ClientSession() as http:
        headers = await signer.headers(http, url, "GET", path)
        async with http.ws_connect(url + path, headers=headers) as ws:
            assert " " in ws._response.headers["X-Geryon-Channel"]      # the server's nonce and proof
            await ws.send_str(proof)
            msg = await ws.receive(timeout=10)
            while msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):   # a greeting, then
                msg = await ws.receive(timeout=10)
            return f"{msg.type.name} {ws.close_code}"


def test_a_deep_handshake_answer_closes_the_socket_not_the_server(cluster: Cluster, secret: bytes) -> None:
    reg = cluster.start_registry()
    node = cluster.start_node("n0", register=False)
    for url, path in ((cluster.registry_url, "/v1/watch"), (node.url, "/v1/cpu/run")):
        # 2,000 deep: past json's recursion limit, within the watch socket's 4 KiB frames
        assert asyncio.run(_handshake_with(url, secret, path, "[" * 2000 + "]" * 2000)) == "CLOSE 1008"
    status, _ = signed(secret, cluster.registry_url, "POST", "/v1/find", b'{"query": []}')
    assert status == 200
    for proc in (reg, node.proc):
        assert "Traceback" not in proc.stderr() and "RecursionError" not in proc.stderr()


async def _ws_errors(url: str, secret: bytes, path: str, frames: list[str]) -> list[dict[str, Any]]:
    out = []
    async with aiohttp.ClientSession() as http:
        for frame in frames:
            async with await Signer(secret).connect(http, url, path) as ws:
                await ws.send_str(frame)
                msg = await ws.receive(timeout=10)
                out.append(json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else {"closed": True})
    return out


def test_node_websockets_refuse_bad_json(cluster: Cluster, secret: bytes) -> None:
    node = cluster.start_node("n0", register=False)
    frames = ["[" * 5000 + "]" * 5000, json.dumps({"cmd": "true", "env": [1]}),
              json.dumps({"cmd": "true", "disks": [5]}), "5", "{not json",
              json.dumps({"job": "j1", "pack": "0" * 64, "task": {"index": [], "kind": "map"}})]
    for path in ("/v1/cpu/run", "/v1/jobs/run"):
        for reply in asyncio.run(_ws_errors(node.url, secret, path, frames)):
            assert reply.get("op") == "error", (path, reply)
            assert "\n" not in reply["error"]
    replies = asyncio.run(_ws_errors(node.url, secret, "/v1/cpu/run", [json.dumps({"cmd": "echo ok"})]))
    assert replies[0].get("op") == "started", replies
    assert "Traceback" not in node.proc.stderr() and "RecursionError" not in node.proc.stderr()


NODE_BAD = {"/v1/chunks": [b'{"capacity": "big"}', b'{"capacity": 5, "name": 7}', b'{"capacity": [[[]]]}'],
            "/v1/chunks/c0/op": [b'{"op": 5}', b'{"op": "listdir", "args": [1]}', b'{"args": {}}'],
            "/v1/jobs/j1/commit": [b'{"staged": 1, "final": {}}', b'{"staged": "x"}']}


def test_node_routes_answer_400_to_bad_json(cluster: Cluster, secret: bytes, tmp_path: Path) -> None:
    node = cluster.start_node("n0", register=False, extra=["--chunk-pool", str(tmp_path / "pool")])
    generic = [deep(5000), b"[" * 100_000, b"[1]", b"{not json", b"\xff\xfe", b"5"]
    for path, bodies in NODE_BAD.items():
        for body in generic + bodies:
            status, doc = signed(secret, node.url, "POST", path, body)
            _one_line_400(status, doc)
    # The claim route takes 1 KiB: bad bodies within it.
    for body in (b"[" * 1000, deep(500), b'{"expect": "x"}', b'{"expect": true}', b"[1]", b"{not json"):
        status, doc = signed(secret, node.url, "POST", "/v1/cpu/claim", body)
        _one_line_400(status, doc)
    status, doc = signed(secret, node.url, "POST", "/v1/chunks/c0/op", b'{"op": "listdir", "args": {"path": "/"}}')
    assert status == 200, doc
    assert signed(secret, node.url, "POST", "/v1/cpu/claim", b'{"expect": 0}')[0] in (200, 409)
    assert "Traceback" not in node.proc.stderr() and "RecursionError" not in node.proc.stderr()


def _serve_with_state(tmp_path: Path, secret_file: Path, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GERYON, "registry", "serve", "--listen", "127.0.0.1:0", "--no-mdns",
                           "--secret-file", str(secret_file), "--state", str(state)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_a_100000_deep_state_file_is_one_line_naming_the_file(tmp_path: Path, secret_file: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"format": 1, "services": ' + "[" * 100_000 + "]" * 100_000 + "}")
    done = _serve_with_state(tmp_path, secret_file, state)
    assert done.returncode == 1, done
    lines = [line for line in done.stderr.splitlines() if "Error" in line or "Traceback" in line]
    assert len(lines) == 1 and str(state) in lines[0] and "nested 100001 deep" in lines[0], done.stderr


def test_state_file_errors_name_the_file(tmp_path: Path, secret_file: Path) -> None:
    state = tmp_path / "state.json"
    entry = {"service": ["svc1", [["persist", "1"]]], "owner": "me"}
    for doc, why in [({"format": 1, "services": [entry, entry]}, "duplicate service name svc1"),
                     ({"format": 1, "services": [{"service": ["svc1", 5], "owner": "me"}]}, "malformed"),
                     ({"format": 1, "services": [{"service": ["svc1", []], "owner": 5}]}, '"owner" must be'),
                     ({"format": 1, "services": 5}, '"services" must be a list')]:
        state.write_text(json.dumps(doc))
        done = _serve_with_state(tmp_path, secret_file, state)
        assert done.returncode == 1, done
        lines = [line for line in done.stderr.splitlines() if "Error" in line or "Traceback" in line]
        assert len(lines) == 1 and str(state) in lines[0] and why in lines[0], done.stderr
