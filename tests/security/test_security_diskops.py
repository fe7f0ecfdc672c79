"""Symbolic links out of a disk, played against every disk op (issue 11, item 5).

A chunk holds links to a secret file and a secret directory outside it. No op of the
node (listings, `files`, `sums`, `check`, `manifest`, `usage`, reads, ranges, `archive`,
copy and move, replica sync) and no local code path (ChunkFS, checksums, listing, a
local job) may return the secret's size, digest or bytes. A link inside the disk is
followed, as the OS would.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fs import errors as fserrors

from geryon.records.badrecords import InputError
from geryon.disks.checksum import check_disk, current_sums, read_manifest, record_files
from geryon.disks.verified import open_verified
from geryon.disks.chunk import ChunkFS, OutsideDisk
from geryon.net.connection import NodeConnection
from geryon.disks.remote import RemoteFS
from geryon.disks.replicate import sync_chunk
from geryon.records.split import list_files, list_local_files
from tests.node.node_helpers import Cluster

SECRET = b"TOPSECRET-" * 777 + b"1234567"      # 7777 bytes
SECRET_SIZE = len(SECRET)
SECRET_SHA = hashlib.sha256(SECRET).hexdigest()


# Fixtures `cluster` and the thread-leak check: tests/security/conftest.py.


def plant(disk: Path, outside: Path) -> None:
    """A disk with data, one link inside, and links out of every kind."""
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "dir").mkdir(exist_ok=True)
    (outside / "dir" / "secret2.txt").write_bytes(SECRET)
    (disk / "a.txt").write_bytes(b"alpha beta\n")
    (disk / "sub").mkdir()
    (disk / "sub" / "b.txt").write_bytes(b"gamma\n")
    (disk / "rec.txt").write_bytes(b"recorded\n")
    record_files(str(disk), ["a.txt", "sub/b.txt", "rec.txt"])
    os.unlink(disk / "rec.txt")                                   # a recorded file, now a link out
    os.symlink(outside / "secret.txt", disk / "rec.txt")
    os.symlink(outside / "secret.txt", disk / "leak")
    os.symlink(os.path.relpath(outside / "secret.txt", disk / "sub"), disk / "sub" / "rel")
    os.symlink(outside / "dir", disk / "dirleak")
    os.symlink("a.txt", disk / "inside")


def numbers(doc: Any) -> Iterator[int]:
    if isinstance(doc, bool):
        return
    if isinstance(doc, int):
        yield doc
    elif isinstance(doc, dict):
        for v in doc.values():
            yield from numbers(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from numbers(v)


def assert_no_secret(body: bytes, what: str) -> None:
    assert SECRET[:40] not in body and SECRET_SHA.encode() not in body, what
    try:
        doc = json.loads(body)
    except ValueError:
        return
    assert SECRET_SIZE not in set(numbers(doc)), (what, body[:300])


def test_no_disk_op_of_a_node_follows_a_link_out(cluster: Cluster, secret: bytes) -> None:
    replica = cluster.tmp / "replica"
    replica.mkdir()
    node = cluster.start_node("n1", ["c0"], register=False, extra=["--replica", f"r0={replica}"])
    disk = node.chunks["c0"]
    plant(disk, cluster.tmp / "outside")
    conn = NodeConnection(node.url, secret)

    def op(name: str, **args: Any) -> tuple[int, Any]:
        status, body = conn.request("POST", "/v1/chunks/c0/op", json.dumps({"op": name, "args": args}).encode())
        assert_no_secret(body, name)
        return status, json.loads(body)

    try:
        for path in ("leak", "sub/rel", "dirleak", "dirleak/secret2.txt", "rec.txt"):
            assert op("getinfo", path=path, namespaces=["details"])[0] == 403
            assert op("listdir", path=path)[0] in (403, 400)
            for target in (f"/v1/chunks/c0/file?path={path}",):
                for headers in ({}, {"Range": "bytes=0-99"}):
                    status, body = conn.request("GET", target, headers=headers)
                    assert status == 403 and b"escapes" in body, (path, status, body[:200])
                    assert_no_secret(body, target)
            assert op("copy", src=path, dst="stolen")[0] == 403
            assert op("move", src=path, dst="stolen")[0] == 403
        assert not (disk / "stolen").exists()
        status, doc = op("listdir", path="/")
        assert status == 200 and sorted(doc["result"]) == ["a.txt", "inside", "sub"]
        status, doc = op("scandir", path="/", namespaces=["details", "stat"])
        assert sorted(i["basic"]["name"] for i in doc["result"]) == ["a.txt", "inside", "sub"]
        status, doc = op("files")
        assert status == 200 and dict(doc["result"]) == {"/a.txt": 11, "/inside": 11, "/sub/b.txt": 6}
        for flags in ({}, {"verify": True}, {"record": True}):
            status, doc = op("sums", **flags)
            assert status == 200 and sorted(doc["result"]["files"]) == ["/a.txt", "/inside", "/sub/b.txt"]
        status, doc = op("check")
        assert status == 200 and "/rec.txt" not in json.dumps(doc["result"]["unrecorded"])
        assert op("manifest")[0] == 200 and op("usage")[0] == 200
        status, body = conn.request("GET", "/v1/chunks/c0/archive")
        assert status == 200
        assert_no_secret(body, "archive")
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            names = sorted(m.name for m in tar.getmembers())
        assert names == ["a.txt", "inside", "sub", "sub/b.txt"], names
        with RemoteFS(node.url, "c0", secret) as master, RemoteFS(node.url, "r0", secret, timeout=60) as copy:
            assert sorted(master.listdir("/")) == ["a.txt", "inside", "sub"]
            with pytest.raises(fserrors.IllegalBackReference):       # the node's 403 "escapes"
                master.readbytes("leak")
            sync_chunk(master, copy, label="r0", accept_changes=True)
        for dirpath, _dirs, files in os.walk(replica):
            for name in files:
                assert SECRET[:40] not in Path(dirpath, name).read_bytes(), name
        assert not any(os.path.islink(os.path.join(d, f)) for d, _, fs_ in os.walk(replica) for f in fs_)
    finally:
        conn.close()
    assert (cluster.tmp / "outside" / "secret.txt").read_bytes() == SECRET


def wordmap(key: str, value: str) -> Any:
    return [(w, 1) for w in value.split()]


def total(key: str, values: Any) -> int:
    return sum(values)


def test_local_disk_code_paths_never_follow_a_link_out(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    plant(disk, tmp_path / "outside")
    root = str(disk)
    chunk = ChunkFS(root)
    assert sorted(chunk.listdir("/")) == ["a.txt", "inside", "sub"]
    assert sorted(i.name for i in chunk.scandir("/", namespaces=["details"])) == ["a.txt", "inside", "sub"]
    assert chunk.readbytes("inside") == b"alpha beta\n"
    for path in ("leak", "sub/rel", "dirleak/secret2.txt", "rec.txt"):
        assert not chunk.exists(path)
        with pytest.raises(OutsideDisk):
            chunk.readbytes(path)
        with pytest.raises(OutsideDisk):
            chunk.getinfo(path, namespaces=["details"])
        with pytest.raises(OutsideDisk):
            with chunk.openbin(path, "a") as f:            # an append would write outside
                f.write(b"x")
        with pytest.raises(InputError, match="outside"):
            open_verified(root, path, "test", read_manifest(root))
    assert dict(list_local_files(root)) == {"/a.txt": 11, "/inside": 11, "/sub/b.txt": 6}
    assert dict(list_files(chunk)) == {"/a.txt": 11, "/inside": 11, "/sub/b.txt": 6}
    sums, _states, _missing = current_sums(root, trust_stat=False)
    assert sorted(sums) == ["/a.txt", "/inside", "/sub/b.txt"]
    assert SECRET_SHA not in {s.sha256 for s in sums.values()}
    report = check_disk(root)
    assert [p for p, _ in report.damaged] == ["/rec.txt"] and "link" in report.damaged[0][1]
    assert report.unrecorded == ["/inside"]
    from geryon.mapreduce.job import Job

    result = Job(map=wordmap, reduce=total, partitions=1).run([root], out=str(tmp_path / "out"))
    words = dict(result)
    assert words.get("alpha") == 2 and not any("TOPSECRET" in str(w) for w in words)
    assert (tmp_path / "outside" / "secret.txt").read_bytes() == SECRET
