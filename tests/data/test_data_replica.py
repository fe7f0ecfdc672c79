"""Replicas on real nodes: verified remote reads, incremental sync, failover, promote.

Every test runs a real registry and real node daemons as subprocesses (tests/node's
`Cluster`), and drives them through the library and the `geryon` command line.
"""
from __future__ import annotations

import logging
import os
import pathlib
import time

import pytest
from fs import errors as fserrors

from geryon.disks.checksum import ChecksumMismatch, read_manifest, record_files
from geryon.disks.failover import open_failover
from geryon.records.readers import raw_chunks, read_records
from geryon.disks.remote import RemoteFS
from geryon.disks.replicate import plan_sync
from geryon.disks.checksum import sum_bytes
from geryon.records.split import list_files, plan_splits

from tests.node.node_helpers import Cluster, wait_until


@pytest.fixture(autouse=True)
def _no_thread_leaks(no_thread_leaks: None) -> None:
    """Every test here must stop the threads it starts."""




def fill(root: pathlib.Path, n: int = 12, tag: str = "") -> dict[str, str]:
    """Write n text files (one in a subdirectory) and record them in the chunk's manifest."""
    files = {}
    for i in range(n):
        rel = f"sub/f{i}.txt" if i == 0 else f"f{i}.txt"
        text = "".join(f"{tag}line {j} of file {i}\n" for j in range(300 + i))
        (root / rel).parent.mkdir(exist_ok=True)
        (root / rel).write_text(text)
        files["/" + rel] = text
    record_files(str(root), list(files))
    return files


def flip(path: pathlib.Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x20]))


def records(disk_fs, name: str) -> dict[str, str]:
    """Every file's text read through the record readers, keyed by path in the disk."""
    out = {}
    for split in plan_splits(name, list_files(disk_fs), 64 << 20, cut_files=False):
        for key, value in read_records(disk_fs, split, "file"):
            out["/" + str(key).split("/", 1)[1]] = value
    return out


def test_plan_sync_copies_changed_and_new_files_and_removes_the_rest() -> None:
    a, b, c = sum_bytes(b"a"), sum_bytes(b"b"), sum_bytes(b"c")
    plan = plan_sync({"/same": a, "/changed": b, "/new": c}, {"/same": a, "/changed": a, "/gone": c})
    assert plan.copy == ("/changed", "/new") and plan.remove == ("/gone",) and plan.keep == ("/same",)


def test_a_local_disk_fails_over_to_its_local_replica(tmp_path: pathlib.Path, corpus: pathlib.Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from geryon.ingest.load import load

    ndb = str(tmp_path / "ndb")
    report = load([str(corpus)], "loc", chunk_size=512 << 10, replicas=2, to=str(tmp_path / "disks"), ndb_file=ndb)
    d = report.disks[0]
    victim = sorted(pathlib.Path(d.path).rglob("*.py"))[0]
    rel = "/" + victim.relative_to(d.path).as_posix()
    expected = victim.read_text()
    flip(victim, 3)
    disk = open_failover(d.name, ndb_file=ndb)
    with disk.fs, caplog.at_level(logging.WARNING, logger="geryon.disks.failover"):
        assert disk.fs.readtext(rel) == expected
        assert records(disk.fs, d.name)[rel] == expected
    [warned] = [r.getMessage() for r in caplog.records if r.name == "geryon.disks.failover"]
    assert warned.startswith(f"d0.loc: master {d.path} failed (d0.loc:{rel[1:]}: damaged: checksum mismatch")
    assert warned.endswith(f"reading replica d0.loc.r1 ({tmp_path / 'disks' / 'replicas' / 'd0.loc.r1'})")


def test_remote_reads_are_verified_against_the_chunk_manifest(cluster: Cluster, secret: bytes) -> None:
    node = cluster.start_node("n1", ["c0"], register=False)
    root = node.chunks["c0"]
    files = fill(root)
    with RemoteFS(node.url, "c0", secret) as remote:
        assert records(remote, "d0") == files
        # A write through the chunk service is recorded, so it is not mistaken for damage.
        remote.writetext("f3.txt", "rewritten\n")
        assert read_manifest(str(root))["/f3.txt"].size == len("rewritten\n")
        files["/f3.txt"] = "rewritten\n"
        assert records(remote, "d0") == files
        flip(root / "f5.txt", 100)
        split = plan_splits("d0", list_files(remote), 64 << 20, cut_files=False)[0]
        with pytest.raises(ChecksumMismatch, match=r"d0:f5.txt: damaged: checksum mismatch in bytes 0-\d+ \(block 0\)"):
            list(read_records(remote, split, "file"))
        with pytest.raises(ChecksumMismatch, match="d0:f5.txt: damaged"):
            b"".join(raw_chunks(remote, split))
        (root / "f6.txt").write_text("short\n")      # a different size: caught when opened
        one = plan_splits("d0", [("/f6.txt", 6)], 64 << 20, cut_files=False)[0]
        with pytest.raises(ChecksumMismatch, match=r"d0:f6.txt: damaged: 6 bytes, \d+ recorded"):
            list(read_records(remote, one, "file"))


def test_replicate_then_sync_only_changes_and_fail_over_on_damage(
        cluster: Cluster, secret: bytes, caplog: pytest.LogCaptureFixture) -> None:
    cluster.name_disks("name=d0.t kfs master=n1!c0\nname=d1.t kfs master=n1!c1\n")
    cluster.start_registry()
    n1 = cluster.start_node("n1", ["c0", "c1"])
    cluster.start_node("n2", [], extra=["--chunk-pool", str(cluster.tmp / "pool2"), "--pool-size", "256M"])
    files = fill(n1.chunks["c0"])
    lone = fill(n1.chunks["c1"], 3, "lone ")
    with cluster.client() as reg:
        wait_until(lambda: reg.find({"svc": "rstyx", "host": "n2", "pool": "*"}), 10)

    made = cluster.geryon("disk", "replicate", "d0.t", "--to", "n2")
    assert made.returncode == 0, made.stderr
    assert made.stdout == "d0.t.r1 n2!chunk0\n"
    assert "made and filled: 12 files copied" in made.stderr
    replica = cluster.tmp / "pool2" / "chunk0"
    assert {k: (replica / k.lstrip("/")).read_text() for k in files} == files
    assert {k: s.sha256 for k, s in read_manifest(str(replica)).items()} == \
        {k: s.sha256 for k, s in read_manifest(str(n1.chunks["c0"])).items()}
    ndb = cluster.ndb.read_text()
    assert "replica=d0.t.r1" in ndb and "master=n2!chunk0" in ndb and "replicaof=d0.t" in ndb

    # Change the master: one file rewritten and one added through Geryon, one added and one
    # removed behind its back. Only those move.
    with RemoteFS(n1.url, "c0", secret) as remote:
        remote.writetext("f2.txt", "changed through geryon\n")
        remote.writetext("added.txt", "added through geryon\n")
        remote.remove("f4.txt")
    (n1.chunks["c0"] / "sub" / "new.txt").write_text("added by hand\n")
    again = cluster.geryon("disk", "replicate", "d0.t", "--to", "n2")
    assert again.returncode == 0, again.stderr
    assert "brought up to date: 3 files copied (" in again.stderr and "1 removed, 10 unchanged" in again.stderr
    assert (replica / "f2.txt").read_text() == "changed through geryon\n"
    assert (replica / "sub" / "new.txt").read_text() == "added by hand\n" and not (replica / "f4.txt").exists()
    files.update({"/f2.txt": "changed through geryon\n", "/added.txt": "added through geryon\n",
                  "/sub/new.txt": "added by hand\n"})
    del files["/f4.txt"]

    # Damage on the master: check names it, reads move to the replica and say why.
    flip(n1.chunks["c0"] / "f7.txt", 50)
    checked = cluster.geryon("disk", "check", "d0.t")
    assert checked.returncode == 1
    assert checked.stdout.splitlines() == ["d0.t:f7.txt: checksum mismatch in block(s) 0 (modified after it was recorded)"]
    disk = open_failover("d0.t", reg := cluster.client(), secret, str(cluster.ndb))
    try:
        with caplog.at_level(logging.WARNING, logger="geryon.disks.failover"):
            assert records(disk.fs, "d0.t") == files
        warned = [r.getMessage() for r in caplog.records if r.name == "geryon.disks.failover"]
        assert len(warned) == 1 and warned[0].startswith("d0.t: master n1!c0 failed (d0.t:f7.txt: damaged: checksum mismatch")
        assert warned[0].endswith("reading replica d0.t.r1 (n2!chunk0)")
        # A disk without a replica fails clearly and hands out nothing.
        flip(n1.chunks["c1"] / "f1.txt", 10)
        lone_disk = open_failover("d1.t", reg, secret, str(cluster.ndb))
        with pytest.raises(ChecksumMismatch, match=r"d1.t: no intact copy can be read \(it has no replica\): "
                                                   r"master n1!c1: d1.t:f1.txt: damaged"):
            records(lone_disk.fs, "d1.t")
        assert lone_disk.fs.readtext("f2.txt") == lone["/f2.txt"]
        lone_disk.fs.close()
    finally:
        disk.fs.close()
        reg.close()

    # The damage is not copied over the good replica.
    refused = cluster.geryon("disk", "replicate", "d0.t", "--to", "n2")
    assert refused.returncode == 1 and (replica / "f7.txt").read_text() == files["/f7.txt"]
    assert "f7.txt: changed since it was recorded" in refused.stderr and "--accept-changes" in refused.stderr
    # Unless the change was meant.
    accepted = cluster.geryon("disk", "replicate", "d0.t", "--to", "n2", "--accept-changes")
    assert accepted.returncode == 0 and "1 files copied" in accepted.stderr, accepted.stderr
    assert (replica / "f7.txt").read_bytes() == (n1.chunks["c0"] / "f7.txt").read_bytes()

    # Damage to the replica that left its size and mtime alone: --verify finds and repairs it.
    victim = replica / "f8.txt"
    st = victim.stat()
    flip(victim, 5)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert "0 files copied" in cluster.geryon("disk", "replicate", "d0.t", "--to", "n2").stderr
    repaired = cluster.geryon("disk", "replicate", "d0.t", "--to", "n2", "--verify")
    assert "1 files copied" in repaired.stderr and victim.read_text() == files["/f8.txt"]


def test_killed_master_reads_move_within_2s_then_promote_and_replicate_again(cluster: Cluster, secret: bytes) -> None:
    cluster.name_disks("name=d0.k kfs master=n1!c0\n")
    cluster.start_registry()
    n1 = cluster.start_node("n1", ["c0"])
    cluster.start_node("n2", [], extra=["--chunk-pool", str(cluster.tmp / "pool2")])
    cluster.start_node("n3", [], extra=["--chunk-pool", str(cluster.tmp / "pool3")])
    files = fill(n1.chunks["c0"], 30)
    big = "".join(f"{i:09d} a line of a large file\n" for i in range(250_000))   # 8.5 MB: 9 checksum blocks
    (n1.chunks["c0"] / "big.txt").write_text(big)
    record_files(str(n1.chunks["c0"]), ["big.txt"])
    files["/big.txt"] = big
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"svc": "rstyx", "pool": "*"})) == 2, 10)
    assert cluster.geryon("disk", "replicate", "d0.k", "--to", "n2").returncode == 0

    with cluster.client() as reg:
        disk = open_failover("d0.k", reg, secret, str(cluster.ndb))
        with disk.fs:
            reader = disk.fs.openbin("big.txt")
            first = reader.read(100)
            assert disk.fs.active.name == "d0.k"
            n1.kill()
            started = time.monotonic()
            rest = reader.read()                       # cut off mid-stream: on from the replica, same offset
            got = records(disk.fs, "d0.k")
            moved = time.monotonic() - started
            reader.close()
            assert (first + rest).decode() == big and got == files
            assert moved < 2.0 and disk.fs.active.name == "d0.k.r1"
        # Once the registry has dropped the dead node, names open on the replica directly.
        wait_until(lambda: not reg.find({"resource": "kfs", "name": "n1"}), 10)
    cat = cluster.geryon("cat", "d0.k:f1.txt")
    assert cat.returncode == 0 and cat.stdout == files["/f1.txt"], cat.stderr
    assert "d0.k: master n1!c0 failed (not live: no node serves it): reading replica d0.k.r1" in cat.stderr

    promoted = cluster.geryon("disk", "promote", "d0.k")
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout == "n2!chunk0\n" and "no replica left" in promoted.stderr
    ndb = cluster.ndb.read_text()
    assert "master=n2!chunk0" in ndb and "d0.k.r1" not in ndb and "n1!c0" not in ndb
    again = cluster.geryon("disk", "replicate", "d0.k", "--to", "n3")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "d0.k.r1 n3!chunk0\n"
    with cluster.client() as reg:
        entry = wait_until(lambda: [s for s in reg.find({"chunk": "*"}) if s.name == "d0.k" and
                                    s.get("host") == "n2" and s.get("addr") and s.get("replica") == "d0.k.r1"], 10)[0]
        assert entry.get("chunk") == "chunk0"
        # The new master is writable now; the new replica is not.
        with RemoteFS(cluster.nodes["n2"].url, "chunk0", secret) as master:
            master.writetext("after.txt", "written after the promotion\n")
        assert cluster.geryon("disk", "replicate", "d0.k", "--to", "n3").returncode == 0
        both = open_failover("d0.k", reg, secret, str(cluster.ndb))
        with both.fs:
            assert [c.where for c in both.fs.copies] == ["n2!chunk0", "n3!chunk0"]
            assert records(both.fs, "d0.k") == {**files, "/after.txt": "written after the promotion\n"}
            with RemoteFS(cluster.nodes["n3"].url, "chunk0", secret) as replica, \
                    pytest.raises(fserrors.ResourceReadOnly):
                replica.writetext("x", "no")
    check = cluster.geryon("disk", "check", "d0.k")
    assert check.returncode == 0 and "d0.k.r1: 32 files verified, ok (n3!chunk0)" in check.stderr
