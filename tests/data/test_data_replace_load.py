"""Replacing an earlier load: its old chunks are emptied in the background (issue 12, load12).

`clear` moves a chunk's files into the chunk's hidden trash at once and answers; the node
deletes them in a thread. The chunk reads as empty from the answer on (listings, `files`,
usage), a new load into it sees none of the old files, a node killed with kill -9 while it
deletes sweeps the trash when it starts again, and nothing outside the chunk is ever
deleted (symbolic links out, a link planted where the trash goes, `..` and trash paths in
requests). Real registry and node daemons, as processes.
"""
from __future__ import annotations

import os
import pathlib

import pytest
from fs import errors as fserrors

from geryon.disks.checksum import read_manifest
from geryon.disks.chunk import TRASH_NAME, is_internal
from geryon.disks.diskdb import read_disks
from geryon.disks.remote import RemoteFS
from tests.node.node_helpers import Cluster, wait_until


def _source(root: pathlib.Path, tag: str, n: int, per_dir: int = 250) -> set[str]:
    """`n` small files named with spaces under `root`; their manifest keys."""
    keys = set()
    for i in range(n):
        d = root / f"{tag} box {i // per_dir}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{tag} msg {i:05d}.txt").write_bytes(f"From {tag} {i}\n".encode() * (1 + i % 7))
        keys.add(f"/{tag} box {i // per_dir}/{tag} msg {i:05d}.txt")
    return keys


def _data_files(chunk: pathlib.Path) -> set[str]:
    """Data files under a chunk, the trash and bookkeeping left out (a walk of the disk)."""
    out = set()
    for dirpath, dirs, files in os.walk(chunk):
        dirs[:] = [d for d in dirs if not is_internal(d)]
        for name in files:
            if not is_internal(name):
                out.add("/" + (pathlib.Path(dirpath) / name).relative_to(chunk).as_posix())
    return out


def _fill(chunk: pathlib.Path, dirs: int, per_dir: int) -> None:
    """Files written straight into a chunk (what an earlier load left), fast."""
    for d in range(dirs):
        sub = chunk / f"old {d}"
        sub.mkdir()
        for i in range(per_dir):
            with open(sub / f"f {i}", "wb") as f:
                f.write(b"old\n")


def _trash_files(chunk: pathlib.Path) -> int:
    trash = chunk / TRASH_NAME
    return sum(len(files) for _, _, files in os.walk(trash)) if trash.is_dir() else 0


def test_a_replaced_load_reads_exactly_its_new_files_and_its_old_chunk_is_emptied(cluster: Cluster,
                                                                                  secret: bytes) -> None:
    cluster.start_registry()
    cluster.start_node("hostone", ("vol-z", "vol-a"))
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"resource": "kfs", "name": "hostone"})) == 2, 20)
    first = _source(cluster.tmp / "mail 1", "first", 3000)
    second = _source(cluster.tmp / "mail 2", "second", 400)
    third = _source(cluster.tmp / "mail 3", "third", 300)
    node = cluster.nodes["hostone"]

    names = {path: name for name, path in node.chunks.items()}

    def disk() -> pathlib.Path:
        d = {d.name: d for d in read_disks(str(cluster.ndb))}["d0.inbox"]
        return node.chunks[d.chunk or d.name]

    def load(src: str) -> pathlib.Path:
        done = cluster.geryon("load", str(cluster.tmp / src), "--app", "inbox", "--cluster", timeout=300)
        assert done.returncode == 0, done.stderr
        assert "could not empty" not in done.stderr and "timed out" not in done.stderr, done.stderr
        return disk()

    one = load("mail 1")
    assert _data_files(one) == first
    two = load("mail 2")                                  # replaces: a new chunk, the old one emptied
    assert two != one
    assert _data_files(two) == second and set(read_manifest(str(two)) or {}) == second
    with RemoteFS(node.url, names[one], secret) as old:
        assert old.listdir("/") == [] and old.files() == [] and old.usage()["used"] == 0
    wait_until(lambda: not (one / TRASH_NAME).exists(), 120)
    assert _data_files(one) == set()

    three = load("mail 3")                                # the emptied chunk is free again: reused
    assert three == one
    assert _data_files(three) == third and set(read_manifest(str(three)) or {}) == third
    wait_until(lambda: not (two / TRASH_NAME).exists(), 120)
    assert _data_files(two) == set()


def test_clear_answers_before_deleting_and_a_node_killed_mid_delete_sweeps_at_start(cluster: Cluster,
                                                                                   secret: bytes) -> None:
    node = cluster.start_node("n1", ("old chunk",), capacity=1 << 30, register=False)
    chunk = node.chunks["old chunk"]
    _fill(chunk, 150, 400)                                # 60,000 files
    with RemoteFS(node.url, "old chunk", secret) as fs:
        assert fs.usage()["used"] == 60_000 * 4
        fs.call("clear")
        # The answer came with the files moved aside, not deleted: the chunk is empty already.
        assert _trash_files(chunk) > 0
        assert fs.listdir("/") == [] and fs.files() == [] and fs.usage()["used"] == 0
    node.kill()                                           # kill -9 while its thread deletes
    left = _trash_files(chunk)
    assert left > 0, "the node had deleted everything before it was killed"
    assert _data_files(chunk) == set()

    node = cluster.start_node("n1", ("old chunk",), register=False)     # restarted: sweeps its trash
    wait_until(lambda: not (chunk / TRASH_NAME).exists(), 120)
    assert _data_files(chunk) == set() and sorted(os.listdir(chunk)) == [".geryon-disk"]
    with RemoteFS(node.url, "old chunk", secret) as fs:
        assert fs.usage()["used"] == 0
        fs.writebytes("/new file.txt", b"new\n")          # the chunk takes new files
        assert fs.listdir("/") == ["new file.txt"]


def test_emptying_a_chunk_never_deletes_outside_it(cluster: Cluster, secret: bytes) -> None:
    outside = cluster.tmp / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "precious.txt").write_bytes(b"keep me\n")
    victim = cluster.tmp / "victim"
    (victim / "batch-0").mkdir(parents=True)
    (victim / "batch-0" / "precious.txt").write_bytes(b"keep me too\n")
    node = cluster.start_node("n1", ("c0",), register=False)
    chunk = node.chunks["c0"]
    (chunk / "dir").mkdir()
    (chunk / "dir" / "a.txt").write_bytes(b"a\n")
    os.symlink(outside, chunk / "link out")                      # links out, at the root and deeper
    os.symlink(outside / "sub" / "precious.txt", chunk / "dir" / "file link out")
    os.symlink(victim, chunk / TRASH_NAME)                        # planted where the trash goes

    with RemoteFS(node.url, "c0", secret) as fs:
        for attack in (lambda: fs.makedir(f"/{TRASH_NAME}"),
                       lambda: fs.makedirs(f"/dir/{TRASH_NAME}/x"),
                       lambda: fs.listdir(f"/{TRASH_NAME}"),
                       lambda: fs.writebytes(f"/{TRASH_NAME}/batch-0/x", b"x"),
                       lambda: fs.move("/dir/a.txt", f"/{TRASH_NAME}/a.txt"),
                       lambda: fs.call("removetree", path=f"/{TRASH_NAME}/../../victim"),
                       lambda: fs.call("removetree", path="/../victim"),
                       lambda: fs.call("syncremove", paths=[f"/{TRASH_NAME}/batch-0/precious.txt"])):
            with pytest.raises((fserrors.FSError, fserrors.IllegalBackReference)):
                attack()
        fs.call("clear")
        assert fs.listdir("/") == []
    wait_until(lambda: not os.path.lexists(chunk / TRASH_NAME), 60)
    assert (outside / "sub" / "precious.txt").read_bytes() == b"keep me\n"
    assert (victim / "batch-0" / "precious.txt").read_bytes() == b"keep me too\n"
    assert sorted(os.listdir(chunk)) == [".geryon-disk"]

    node.kill()                                                   # a link planted for the start's sweep
    os.symlink(victim, chunk / TRASH_NAME)
    cluster.start_node("n1", ("c0",), register=False)
    wait_until(lambda: not os.path.lexists(chunk / TRASH_NAME), 60)
    assert (victim / "batch-0" / "precious.txt").read_bytes() == b"keep me too\n"
