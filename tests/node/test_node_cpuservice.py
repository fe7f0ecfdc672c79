"""The cpu service's own checks, spoken to directly: bad disk names, exports, concurrency."""
from __future__ import annotations

import asyncio
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import aiohttp

from geryon.disks.remote import RemoteFS
from node_helpers import Cluster
from registry.signer import Signer


async def _run(url: str, secret: bytes, spec: dict) -> list:
    async with aiohttp.ClientSession() as http:
        async with await Signer(secret).connect(http, url, "/v1/cpu/run") as ws:
            await ws.send_str(json.dumps(spec))
            return [json.loads(m.data) if m.type == aiohttp.WSMsgType.TEXT else m.data async for m in ws]


async def _put(url: str, secret: bytes, digest: str, body: bytes) -> int:
    path = f"/v1/cpu/exports/{digest}"
    async with aiohttp.ClientSession() as http:
        async with await Signer(secret).send(http, "PUT", url, path, body) as resp:
            return resp.status


def test_bad_disk_names_and_foreign_output_disks_are_refused(cluster: Cluster, secret: bytes) -> None:
    node = cluster.start_node("n1", ["c0"], register=False)
    here = node.chunk_url("c0")
    for disks, cpudisk, why in (
            ([{"name": "../evil", "url": here}], None, "bad disk name"),
            ([{"name": "client", "url": here}], None, "bad disk name"),
            ([], {"name": "d9.cpu", "url": "geryon://127.0.0.1:1/c0"}, "not on n1")):
        frames = asyncio.run(_run(node.url, secret, {"cmd": "touch $n/ran", "disks": disks, "cpudisk": cpudisk}))
        assert frames[-1]["op"] == "error" and why in frames[-1]["error"], frames
    assert not (node.chunks["c0"] / "ran").exists()
    frames = asyncio.run(_run(node.url, secret, {"cmd": "true", "export": "0" * 64}))
    assert "export not on this node" in frames[-1]["error"]


def test_exports_must_match_their_hash(cluster: Cluster, secret: bytes) -> None:
    node = cluster.start_node("n1", [], register=False)
    body = b"not really a tar"
    assert asyncio.run(_put(node.url, secret, "a" * 64, body)) == 400
    assert asyncio.run(_put(node.url, secret, hashlib.sha256(body).hexdigest(), body)) == 400   # not a tar
    assert asyncio.run(_put(node.url, secret, "G" * 64, body)) == 400                          # not a hash


def test_remotefs_serves_threads_at_once(cluster: Cluster, secret: bytes) -> None:
    node = cluster.start_node("n1", ["c0"], register=False)
    for i in range(40):
        (node.chunks["c0"] / f"f{i}").write_bytes(bytes([i]) * (i * 1000 + 1))
    with RemoteFS(node.url, "c0", secret) as remote, ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(lambda i: len(remote.readbytes(f"f{i}")), range(40)))
        list(pool.map(lambda i: remote.writebytes(f"g{i}", b"x" * i), range(40)))
    assert sizes == [i * 1000 + 1 for i in range(40)]
    assert [(node.chunks["c0"] / f"g{i}").read_bytes() for i in range(40)] == [b"x" * i for i in range(40)]
