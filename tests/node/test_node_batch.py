"""`PUT /v1/chunks/{chunk}/files`, a load's batch of files, against a real node process (issue 12, item 12).

A good batch is written and recorded with one journal line. Every bad one is refused
whole, with nothing written and the manifest unchanged: over the body limit (413, unread),
a body that is not the signed one (401), cut short, malformed (400, one line), a path out
of the chunk or through a symbolic link (403), a bookkeeping name, a replica.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from geryon.disks.checksum import read_manifest, sum_bytes
from geryon.disks.chunk import META_NAME, SUMS_JOURNAL
from geryon.disks.filebatch import DEFAULT_BATCH_BODY, MAX_BATCH_FILES, encode_batch
from geryon.net.connection import NodeConnection
from geryon.disks.remote import RemoteFS
from node_helpers import Cluster
from registry.auth import HEADER_CONTENT_SHA256
from registry.signer import Signer

TARGET = "/v1/chunks/c0/files"


def _snapshot(disk: Path) -> dict[str, bytes]:
    """Every file of the disk (its manifest and journal too; not the byte count), with its bytes."""
    return {str(p.relative_to(disk)): (p.read_bytes() if not p.is_symlink() else b"->" + os.readlink(p).encode())
            for p in sorted(disk.rglob("*")) if (p.is_file() or p.is_symlink()) and p.name != META_NAME}


def _raw(url: str, head: dict[str, str], body: bytes, length: int | None = None,
         hangup: bool = False) -> tuple[int, bytes]:
    """A PUT sent by hand (`head` has its Host), `length` declared; with `hangup`, half-closed after `body`."""
    split = urlsplit(url)
    with socket.create_connection((split.hostname, split.port), timeout=30) as s:
        lines = [f"PUT {TARGET} HTTP/1.1", f"Content-Length: {len(body) if length is None else length}", "Connection: close",
                 *(f"{k}: {v}" for k, v in head.items())]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        if hangup:
            s.shutdown(socket.SHUT_WR)          # the sender went away mid-body
        reply = b""
        while data := s.recv(65536):
            reply += data
    if not reply:
        return 0, b""
    status = int(reply.split(b" ", 2)[1])
    return status, reply.split(b"\r\n\r\n", 1)[1]


@pytest.fixture
def node(cluster: Cluster, secret: bytes):
    n = cluster.start_node("n0", ["c0", "r0"], register=False, capacity=1 << 20)
    for chunk in ("c0", "r0"):
        with RemoteFS(n.url, chunk, secret) as fs:
            fs.call("putsums", files={})          # chunks that keep a manifest, as a load's
            if chunk == "r0":
                fs.call("role", replica=True)
    return n


def test_a_good_batch_is_written_and_recorded_in_one_journal_line(node, secret: bytes) -> None:
    disk = node.chunks["c0"]
    files = [(f"/mail dir/f {i}.txt", f"message {i}\n".encode() * (i + 1)) for i in range(50)]
    files.append(("/top.txt", b""))
    with RemoteFS(node.url, "c0", secret) as fs:
        assert fs.put_files(files) == 51
        recorded = fs.manifest()
    assert recorded is not None and set(recorded) == {p for p, _ in files}
    for path, data in files:
        assert (disk / path.lstrip("/")).read_bytes() == data
        assert (recorded[path].size, recorded[path].sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert recorded[path].crc32 == sum_bytes(data).crc32
    assert len((disk / SUMS_JOURNAL).read_text().splitlines()) == 2     # its header, one change
    assert not [p for p in disk.rglob("*") if ".geryon-tmp-" in p.name]
    assert read_manifest(str(disk)) == recorded                          # this process replays it too
    with RemoteFS(node.url, "c0", secret) as fs:                         # again: replaced, not added
        assert fs.put_files([("/top.txt", b"now\n")]) == 1
        assert fs.manifest()["/top.txt"].size == 4
        assert fs.usage()["used"] == sum(len(d) for p, d in files if p != "/top.txt") + 4


@pytest.mark.parametrize("case", ["traversal", "absolute-traversal", "symlink-file", "symlink-dir", "internal",
                                  "internal-dir", "root", "directory", "full"])
def test_a_batch_with_one_bad_path_is_refused_whole(node, secret: bytes, case: str) -> None:
    disk = node.chunks["c0"]
    outside = node.chunks["c0"].parent / "outside"
    outside.mkdir(exist_ok=True)
    os.symlink(outside / "stolen.txt", disk / "link.txt")
    os.symlink(outside, disk / "linkdir")
    (disk / "adir").mkdir()
    bad = {"traversal": ("../outside/x.txt", 403), "absolute-traversal": ("/a/../../outside/x.txt", 403),
           "symlink-file": ("/link.txt", 403), "symlink-dir": ("/linkdir/x.txt", 403),
           "internal": ("/.geryon-sums.log", 403), "internal-dir": ("/.geryon-tmp-x/y", 403),
           "root": ("/", 400), "directory": ("/adir", 400), "full": ("/big", 507)}[case]
    body = b"B" * (2 << 20) if case == "full" else b"evil\n"
    before = _snapshot(disk)
    conn = NodeConnection(node.url, secret)
    try:
        status, reply = conn.request("PUT", TARGET, encode_batch([("/good.txt", b"fine\n"), (bad[0], body)]))
    finally:
        conn.close()
    assert status == bad[1], reply
    assert b"\n" not in json.loads(reply)["error"].encode()
    assert _snapshot(disk) == before and not list(outside.iterdir())


@pytest.mark.parametrize("case", ["no-index", "not-json", "too-deep", "not-a-list", "bad-entry", "negative", "bool-size",
                                  "short", "long", "twice", "too-many"])
def test_a_malformed_batch_is_a_400_with_one_line_and_nothing_written(node, secret: bytes, case: str) -> None:
    disk = node.chunks["c0"]
    index = {"no-index": None, "not-json": b"{files", "too-deep": b'{"files": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
             "not-a-list": {"files": {"a": 1}},
             "bad-entry": {"files": [["/a", 1, 2]]}, "negative": {"files": [["/a", -1]]},
             "bool-size": {"files": [["/a", True]]}, "short": {"files": [["/a", 10]]},
             "long": {"files": [["/a", 2]]}, "twice": {"files": [["/a", 2], ["/a", 2]]},
             "too-many": {"files": [[f"/f{i}", 0] for i in range(MAX_BATCH_FILES + 1)]}}[case]
    data = b"abcd"
    body = data if index is None else (index if isinstance(index, bytes) else json.dumps(index).encode()) + b"\n" + data
    before = _snapshot(disk)
    conn = NodeConnection(node.url, secret)
    try:
        status, reply = conn.request("PUT", TARGET, body)
    finally:
        conn.close()
    assert status == 400, reply
    error = json.loads(reply)["error"]
    assert error.startswith("bad file batch") and "\n" not in error
    assert _snapshot(disk) == before


def test_a_body_not_the_signed_one_cut_short_or_too_big_is_refused_unwritten(node, secret: bytes) -> None:
    disk = node.chunks["c0"]
    before = _snapshot(disk)
    good = encode_batch([("/a.txt", b"the real bytes\n")])
    evil = encode_batch([("/a.txt", b"the evil bytes\n")])
    head = Signer(secret).headers_sync(node.url, "PUT", TARGET, good)
    status, reply = _raw(node.url, head, evil)                                # same length, other bytes
    assert status == 401 and b"signed digest" in reply
    head = Signer(secret).headers_sync(node.url, "PUT", TARGET, good)
    status, _ = _raw(node.url, head, good[:len(good) // 2], length=len(good), hangup=True)   # the sender went away
    assert status in (0, 400)
    big = DEFAULT_BATCH_BODY + 1
    head = Signer(secret).headers_sync(node.url, "PUT", TARGET, digest="0" * 64)
    assert head[HEADER_CONTENT_SHA256] == "0" * 64
    status, reply = _raw(node.url, head, b"", length=big)                     # refused before any byte
    assert status == 413 and b"over" in reply
    # The node is alive and the chunk as it was (a request that succeeds comes after).
    with RemoteFS(node.url, "c0", secret) as fs:
        assert fs.put_files([("/after.txt", b"x")]) == 1
    after = _snapshot(disk)
    assert {k: v for k, v in after.items() if k != "after.txt" and k != SUMS_JOURNAL} == \
        {k: v for k, v in before.items() if k != SUMS_JOURNAL}
    assert not (disk / "a.txt").exists()


def test_a_replica_refuses_a_batch(node, secret: bytes) -> None:
    disk = node.chunks["r0"]
    before = _snapshot(disk)
    conn = NodeConnection(node.url, secret)
    try:
        status, reply = conn.request("PUT", "/v1/chunks/r0/files", encode_batch([("/a.txt", b"x")]))
    finally:
        conn.close()
    assert status == 403, reply
    assert _snapshot(disk) == before
