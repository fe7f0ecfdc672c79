"""Attacks on authenticated WebSockets (issue 11), played on real servers with our own raw client.

The client here is written from docs/SECURITY.md ("Wire protocol"), not from
`registry.channel`: it signs the upgrade with the real secret, does the handshake with the
real key, and can then misbehave. On every site that accepts a channel (rcpu, job attempts,
taskfs sessions and tree links on a node; sessions and watches on the registry), a forged
frame (bad MAC), two frames swapped, a frame sent twice, a frame after a forged one and a
frame reflected back to its sender each close the connection with 1008, log one refusal,
and do nothing; the same frames, sent right, do what they say (so each attack test can
fail). A captured upgrade is refused by another node, by the registry, by the same node
after a restart and by the same node a second time; a client that cannot prove the key
is refused at the handshake.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from registry.channel import HEADER_CHANNEL, ChannelRefused
from registry.signer import IDENTITIES, Signer
from tests.node.node_helpers import Cluster, wait_until

POLICY = 1008


# -- the raw client ----------------------------------------------------------------------------
def _key(secret: bytes, ident: Any, client_nonce: str, server_nonce: str) -> bytes:
    info = json.dumps(["geryon-channel-1", ident.server, ident.cluster, ident.instance,
                       client_nonce, server_nonce]).encode()
    return hmac.digest(hmac.digest(secret, info, "sha256"), b"geryon frame key\x01", "sha256")


def _proof(key: bytes, who: bytes) -> str:
    return hmac.digest(key, b"proof " + who, "sha256").hex()


class Raw:
    """One WebSocket to a server, with the frame key: frames are sealed by hand."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, key: bytes) -> None:
        self.ws, self.key = ws, key

    def mac(self, direction: bytes, kind: bytes, seq: int, payload: bytes) -> bytes:
        return hmac.digest(self.key, direction + kind + struct.pack(">Q", seq) + payload, "sha256")[:16]

    def text(self, doc: Any, seq: int, *, direction: bytes = b"c") -> str:
        payload = json.dumps(doc)
        return f"{seq}.{self.mac(direction, b't', seq, payload.encode()).hex()}.{payload}"

    def binary(self, payload: bytes, seq: int) -> bytes:
        return struct.pack(">Q", seq) + self.mac(b"c", b"b", seq, payload) + payload

    async def frames(self, timeout: float = 30) -> tuple[list[Any], int | None]:
        """Every data frame the server sends until it closes (raw), and its close code."""
        got: list[Any] = []
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return got, self.ws.close_code
            got.append(msg.data)


async def _open(http: aiohttp.ClientSession, secret: bytes, url: str, target: str,
                headers: dict[str, str] | None = None, *, key_of: Callable[[bytes], bytes] | None = None,
                signed: dict[str, str] | None = None) -> Raw:
    """Sign the upgrade (or send the `signed` headers of another one), check the server's proof
    in the 101 answer; frames are then MAC'd under the key (or under `key_of(key)`)."""
    signer = Signer(secret)
    signed = signed or signer.headers_sync(url, "GET", target, headers=headers)
    ident = signer.identity_sync(url)
    ws = await http.ws_connect(url + target, headers=signed, autoclose=False)
    nonce, proof = ws._response.headers[HEADER_CHANNEL].split(" ")
    key = _key(secret, ident, signed["X-Geryon-Nonce"], nonce)
    assert hmac.compare_digest(proof, _proof(key, b"server"))   # the server holds it too
    return Raw(ws, key_of(key) if key_of else key)


# -- the sites -------------------------------------------------------------------------------------
@dataclass
class Site:
    """A channel endpoint, the frames that make it act, and how to see that it did."""

    name: str
    url: str
    target: str
    frames: list[Any]                    # JSON documents, sent in order
    acted: Callable[[], bool]            # did the frames' effect happen?
    log: Callable[[], str]               # the server's log
    headers: dict[str, str] = field(default_factory=dict)
    greeting: int = 0                    # frames the server sends unasked on open
    answers: bool = True                 # does the server answer the frames?


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, bytes, dict[str, Site]]]:
    """One registry and one node for the whole module (the attacks leave them as they were)."""
    from registry.auth import create_secret
    tmp = tmp_path_factory.mktemp("frames")
    secret = create_secret(tmp / "secret")
    cluster = Cluster(tmp, tmp / "secret")
    try:
        reg = cluster.start_registry()
        n0 = cluster.start_node("n0", ["c0"], register=False)
        marker = {name: tmp / f"ran-{name}" for name in ("rcpu", "taskfs")}

        def signed_json(url: str, method: str, target: str, doc: Any = None) -> Any:
            from geryon.net.connection import NodeConnection
            body = json.dumps(doc).encode() if doc is not None else b""
            with NodeConnection(url, secret) as conn:
                status, reply = conn.request(method, target, body, {"Content-Type": "application/json"}
                                             if body else None)
            assert status == 200, reply
            return json.loads(reply)

        def tree_has(url: str) -> bool:
            return any(c.get("url") == url for c in signed_json(n0.url, "GET", "/v1/tree")["children"])

        def registered(name: str) -> bool:
            found = signed_json(cluster.registry_url, "POST", "/v1/find", {"query": [["svc", "evil"]]})
            return name in json.dumps(found)

        def node_log() -> str:
            return n0.proc.stderr()

        sites = {
            "rcpu": Site("rcpu", n0.url, "/v1/cpu/run", [{"cmd": f"touch {marker['rcpu']}"}],
                         marker["rcpu"].exists, node_log),
            "taskfs": Site("taskfs", n0.url, "/v1/session",
                           [{"op": "reserve", "id": 1, "n": 0, "os": None, "arch": None, "pick": "spread",
                             "here": True},
                            {"op": "exec", "id": 2, "cmd": f"touch {marker['taskfs']}", "env": {},
                             "peers": None, "base": 0}],
                           marker["taskfs"].exists, node_log),
            "tree": Site("tree", n0.url, "/v1/tree/join",
                         [{"op": "hello", "name": "intruder", "url": "http://192.0.2.7:1", "counts": []}],
                         lambda: tree_has("http://192.0.2.7:1"), node_log, answers=False),
            "jobs": Site("jobs", n0.url, "/v1/jobs/run",
                         [{"job": "j1", "pack": "0" * 64, "task": {"kind": "map", "index": 0}}],
                         lambda: True, node_log),    # acts by answering (not one answer when it must not)
            "registry": Site("registry", cluster.registry_url, "/v1/session",
                             [{"op": "register", "id": 1, "name": "intruder", "attrs": [["svc", "evil"]]}],
                             lambda: registered("intruder"), reg.stderr,
                             headers={"X-Geryon-Client": "raw-1", "X-Geryon-Owner": "mallory"}, greeting=1),
        }
        yield cluster, secret, sites
    finally:
        cluster.stop()
        IDENTITIES.forget(cluster.registry_url)
        for node in cluster.nodes.values():
            IDENTITIES.forget(node.url)


@pytest.fixture
def sites(world: tuple[Cluster, bytes, dict[str, Site]]) -> dict[str, Site]:
    cluster, _, found = world
    for path in cluster.tmp.glob("ran-*"):
        path.unlink()
    return found


@pytest.fixture
def key(world: tuple[Cluster, bytes, dict[str, Site]]) -> bytes:
    return world[1]


async def _play(site: Site, secret: bytes, send: Callable[[Raw], list[Any]], *,
                until_acted: bool = False) -> tuple[list[Any], int | None]:
    """Open a channel to `site`, send the frames `send` makes; the server's frames and close code
    (`until_acted`: close ourselves once the site acted, with its first answer if it answers)."""
    async with aiohttp.ClientSession() as http:
        raw = await _open(http, secret, site.url, site.target, site.headers)
        for _ in range(site.greeting):
            await raw.ws.receive(timeout=30)
        for frame in send(raw):
            with contextlib.suppress(ConnectionError):     # the server may have closed already
                if isinstance(frame, bytes):
                    await raw.ws.send_bytes(frame)
                else:
                    await raw.ws.send_str(frame)
        if until_acted:
            first = [(await raw.ws.receive(timeout=30)).data] if site.answers else []
            await asyncio.to_thread(wait_until, site.acted, 30, 0.1)
            await raw.ws.close()
            return first, None
        got, code = await raw.frames()
        await raw.ws.close()
        return got, code


ATTACKS: dict[str, tuple[str, Callable[[Raw, list[Any]], list[Any]]]] = {
    # name: (the refusal logged, the frames sent)
    "forged": ("bad frame MAC", lambda r, fs: [r.text(fs[0], 1)[:-1] + " "]),
    "forged MAC": ("bad frame MAC", lambda r, fs: [_flip(r.text(fs[0], 1))]),
    "swapped": ("frame out of sequence", lambda r, fs: [r.text({"op": "ping"}, 2), r.text(fs[0], 1)]),
    "after a forged one": ("bad frame MAC", lambda r, fs: [_flip(r.text({"op": "ping"}, 1)),
                                                          *[r.text(f, i + 1) for i, f in enumerate(fs)]]),
    "reflected": ("bad frame MAC", lambda r, fs: [r.text(fs[0], 1, direction=b"s")]),
    "forged binary": ("bad frame MAC", lambda r, fs: [r.binary(b"\x00junk", 1)[:-1] + b"!"]),
}


def _flip(frame: str) -> str:
    seq, mac, payload = frame.split(".", 2)
    return f"{seq}.{mac[:-1]}{'0' if mac[-1] != '0' else '1'}.{payload}"


def _refusals(site: Site, reason: str) -> int:
    return site.log().count(reason)


@pytest.mark.parametrize("site_name", ["rcpu", "taskfs", "tree", "jobs", "registry"])
def test_frames_sent_right_are_obeyed(sites: dict[str, Site], key: bytes, site_name: str) -> None:
    """The control: the raw client speaks the protocol, so the attacks below can fail."""
    site = sites[site_name]

    def right(r: Raw) -> list[Any]:
        return [r.text(f, i + 1) for i, f in enumerate(site.frames)]

    got, _ = asyncio.run(_play(site, key, right, until_acted=True))   # waits for its effect
    if site.answers:
        seq, mac, payload = str(got[0]).split(".", 2)   # MAC'd, in sequence after any greeting
        assert seq == str(1 + site.greeting) and len(mac) == 32, got
        if site_name == "jobs":
            assert "job pack not on this node" in payload


@pytest.mark.parametrize("attack", list(ATTACKS))
@pytest.mark.parametrize("site_name", ["rcpu", "taskfs", "tree", "jobs", "registry"])
def test_a_bad_frame_closes_the_connection_logs_once_and_does_nothing(
        sites: dict[str, Site], key: bytes, site_name: str, attack: str) -> None:
    site = sites[site_name]
    reason, frames = ATTACKS[attack]
    before = _refusals(site, reason)
    got, code = asyncio.run(_play(site, key, lambda r: frames(r, site.frames)))
    assert code == POLICY, (got, site.log()[-2000:])
    assert got == [], got                                   # not one answer to a bad frame
    wait_until(lambda: _refusals(site, reason) > before, 30)
    assert _refusals(site, reason) == before + 1, site.log()[-2000:]
    assert site_name == "jobs" or not site.acted()        # jobs: not one answer is the proof


@pytest.mark.parametrize("site_name", ["rcpu", "taskfs", "registry"])
def test_a_frame_sent_twice_closes_the_connection(sites: dict[str, Site], key: bytes, site_name: str) -> None:
    site = sites[site_name]
    before = _refusals(site, "frame out of sequence")

    def twice(r: Raw) -> list[Any]:
        first = r.text(site.frames[0], 1)
        return [first, first]

    _, code = asyncio.run(_play(site, key, twice))
    assert code == POLICY
    wait_until(lambda: _refusals(site, "frame out of sequence") == before + 1, 30)


def test_the_registry_watch_refuses_a_forged_frame(world: tuple[Cluster, bytes, dict[str, Site]]) -> None:
    cluster, secret, found = world
    site = found["registry"]
    before = _refusals(site, "bad frame MAC")

    async def play() -> int | None:
        async with aiohttp.ClientSession() as http:
            raw = await _open(http, secret, site.url, "/v1/watch")
            await raw.ws.send_str(_flip(raw.text({"op": "ping"}, 1)))
            while True:                               # the snapshot may come first
                msg = await raw.ws.receive(timeout=30)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return raw.ws.close_code
    assert asyncio.run(play()) == POLICY
    wait_until(lambda: _refusals(site, "bad frame MAC") == before + 1, 30)


# -- the handshake ----------------------------------------------------------------------------------
def test_a_client_that_cannot_prove_the_key_is_refused_and_runs_nothing(
        world: tuple[Cluster, bytes, dict[str, Site]]) -> None:
    cluster, secret, found = world
    n0 = cluster.nodes["n0"]
    marker = cluster.tmp / "ran-handshake"
    before = n0.proc.stderr().count("bad frame MAC")
    # Its first frame is its proof: MAC'd under a guessed key, or under the key of the server's
    # own proof (reflected), it closes the socket before anything runs.
    for wrong in (lambda k: b"\0" * 32, lambda k: bytes.fromhex(_proof(k, b"server"))):
        async def play() -> tuple[list[Any], int | None]:
            async with aiohttp.ClientSession() as http:
                raw = await _open(http, secret, n0.url, "/v1/cpu/run", key_of=wrong)
                await raw.ws.send_str(raw.text({"cmd": f"touch {marker}"}, 1))
                got, code = await raw.frames()
                await raw.ws.close()
                return got, code
        got, code = asyncio.run(play())
        assert code == POLICY and got == []
    wait_until(lambda: n0.proc.stderr().count("bad frame MAC") == before + 2, 30)
    assert not marker.exists()


def test_a_captured_upgrade_is_refused_elsewhere_again_and_after_a_restart(
        cluster: Cluster, secret: bytes, tmp_path: Path) -> None:
    cluster.start_registry()
    n0 = cluster.start_node("n0", ["c0"], register=False)
    n1 = cluster.start_node("n1", ["c0"], register=False)
    marker = tmp_path / "ran"
    captured = Signer(secret).headers_sync(n0.url, "GET", "/v1/cpu/run")

    async def replay(url: str, target: str = "/v1/cpu/run") -> tuple[int, str]:
        async with aiohttp.ClientSession() as http:
            try:
                ws = await http.ws_connect(url + target, headers=captured)
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status, str(exc.headers)
            await ws.send_str(json.dumps({"cmd": f"touch {marker}"}))   # what the attacker would send
            await ws.close()
            return 101, ""

    assert asyncio.run(replay(n1.url))[0] == 401                          # (a) another node
    assert asyncio.run(replay(cluster.registry_url, "/v1/session"))[0] == 401   # (b) the registry
    # The real client uses it once, as meant; a second use is refused.
    async def real() -> None:
        async with aiohttp.ClientSession() as http:
            raw = await _open(http, secret, n0.url, "/v1/cpu/run", signed=captured)
            await raw.ws.close()
    asyncio.run(real())
    assert asyncio.run(replay(n0.url))[0] == 401                          # the same node, again
    fresh = Signer(secret).headers_sync(n0.url, "GET", "/v1/cpu/run")
    n0.kill()
    n0b = cluster.start_node("n0", ["c0"], register=False)
    captured = fresh

    assert asyncio.run(replay(n0b.url))[0] == 401                         # (c) after a restart
    assert not marker.exists()
    for node, why in ((n1, "another server"), (n0b, "wrong server instance")):
        wait_until(lambda n=node, w=why: w in n.proc.stderr(), 30)
    assert "replayed signature" in n0.proc.stderr()                       # its log outlives it
    IDENTITIES.forget(n0b.url)
    IDENTITIES.forget(n1.url)
    IDENTITIES.forget(cluster.registry_url)


def test_a_server_proof_captured_from_one_upgrade_does_not_pass_for_another(
        world: tuple[Cluster, bytes, dict[str, Site]]) -> None:
    """The server's nonce and proof ride on its 101 answer: an impostor without the secret that
    replays a real node's answer (its identity, its `X-Geryon-Channel`) is refused by the client,
    whose fresh upgrade nonce makes another key; a real node's own answer passes."""
    cluster, secret, _ = world
    n0 = cluster.nodes["n0"]

    async def play() -> tuple[str, str]:
        async with aiohttp.ClientSession() as http:
            real = await Signer(secret).connect(http, n0.url, "/v1/cpu/run")    # the real handshake passes
            captured = real.ws._response.headers[HEADER_CHANNEL]
            await real.close()
            hello = await (await http.get(n0.url + "/v1/hello")).read()

            async def hello_route(request: web.Request) -> web.Response:
                return web.Response(body=hello, content_type="application/json")

            async def run_route(request: web.Request) -> web.WebSocketResponse:
                ws = web.WebSocketResponse()
                ws.headers[HEADER_CHANNEL] = captured
                await ws.prepare(request)
                await ws.receive()
                return ws

            app = web.Application()
            app.add_routes([web.get("/v1/hello", hello_route), web.get("/v1/cpu/run", run_route)])
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]                     # type: ignore[union-attr]
            impostor = f"http://127.0.0.1:{port}"
            try:
                with pytest.raises(ChannelRefused) as refused:
                    await Signer(secret).connect(http, impostor, "/v1/cpu/run")
            finally:
                IDENTITIES.forget(impostor)
                await runner.cleanup()
            return captured, str(refused.value)

    captured, why = asyncio.run(play())
    assert " " in captured and "failed the handshake" in why, why
