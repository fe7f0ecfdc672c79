"""`geryon load --cluster` of many small files through a real registry and nodes (issue 12, item 12).

Thousands of files with spaces in their names go to two nodes as batches, two copies:
both copies hold every file with the source's bytes and record the same checksums. A
node killed with kill -9 while a batch is being written leaves a chunk whose manifest is
consistent (no recorded file missing or different); after a restart the load runs again
and completes exactly.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess

import pytest

from geryon.disks.checksum import check_disk, read_manifest
from geryon.disks.chunk import TEMP_MARK, is_internal
from geryon.disks.diskdb import read_disks
from geryon.disks.remote import RemoteFS
from tests.node.node_helpers import GERYON, Cluster, wait_until


@pytest.fixture(autouse=True)
def _no_thread_leaks(no_thread_leaks: None) -> None:
    """Every test here must stop the threads it starts."""


def _pooled(c: Cluster, name: str) -> None:
    c.start_node(name, (), extra=["--chunk-pool", str(c.tmp / f"pool-{name}"), "--pool-size", "512M"])


def _source(root: pathlib.Path, n: int, size: int, per_dir: int) -> dict[str, str]:
    """`n` files named with spaces (`box 3/msg 0042 of box 3.txt`); their SHA-256 by manifest key."""
    sums = {}
    for i in range(n):
        d = root / f"box {i // per_dir}"
        d.mkdir(parents=True, exist_ok=True)
        data = (f"From user{i} at example {i}\n".encode() * (size // 26 + 1))[: size - (i % 97)]
        (d / f"msg {i:05d} of box {i // per_dir}.txt").write_bytes(data)
        sums[f"/box {i // per_dir}/msg {i:05d} of box {i // per_dir}.txt"] = hashlib.sha256(data).hexdigest()
    return sums


def _data_files(chunk: pathlib.Path) -> set[str]:
    return {"/" + p.relative_to(chunk).as_posix() for p in chunk.rglob("*")
            if p.is_file() and not any(is_internal(part) for part in p.relative_to(chunk).parts)}


def _pool_chunk(c: Cluster, host: str, chunk: str) -> pathlib.Path:
    return c.tmp / f"pool-{host}" / chunk


def test_a_cluster_load_of_3000_files_with_spaces_puts_equal_copies_on_two_nodes(cluster: Cluster) -> None:
    cluster.start_registry()
    for n in ("n1", "n2"):
        _pooled(cluster, n)
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"svc": "rstyx", "pool": "*"})) == 2, 20)
    want = _source(cluster.tmp / "mail", 3000, 700, 400)

    loaded = cluster.geryon("load", str(cluster.tmp / "mail"), "--app", "sp", "--replicas", "2", "--cluster",
                            timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["d0.sp"]
    disks = {d.name: d for d in read_disks(str(cluster.ndb))}
    master, replica = disks["d0.sp"], disks["d0.sp.r1"]
    assert {master.host, replica.host} == {"n1", "n2"}
    for d in (master, replica):
        chunk = _pool_chunk(cluster, d.host, d.chunk or "")
        recorded = read_manifest(str(chunk))
        assert recorded is not None and {k: v.sha256 for k, v in recorded.items()} == want, d.name
        assert _data_files(chunk) == set(want)
        report = check_disk(str(chunk))
        assert report.verified == 3000 and not report.damaged and not report.unrecorded, d.name
    check = cluster.geryon("disk", "check", "d0.sp", timeout=120)             # master and replica, on their nodes
    assert check.returncode == 0, check.stdout + check.stderr


def _temp_files(pool: pathlib.Path) -> bool:
    try:
        for chunk in os.listdir(pool):
            for box in os.listdir(pool / chunk):
                if os.path.isdir(pool / chunk / box) and any(TEMP_MARK in n for n in os.listdir(pool / chunk / box)):
                    return True
    except (FileNotFoundError, NotADirectoryError):
        pass
    return False


def test_a_node_killed_mid_batch_leaves_a_consistent_chunk_and_the_load_runs_again(cluster: Cluster,
                                                                                   secret: bytes) -> None:
    cluster.start_registry()
    _pooled(cluster, "n1")
    with cluster.client() as reg:
        wait_until(lambda: reg.find({"svc": "rstyx", "pool": "*"}), 20)
    want = _source(cluster.tmp / "mail", 8000, 1500, 8000)
    pool = cluster.tmp / "pool-n1"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    env.update({"GERYON_REGISTRY": cluster.registry_url, "GERYON_SECRET_FILE": str(cluster.secret_file),
                "GERYON_NDB": str(cluster.ndb), "XDG_CONFIG_HOME": str(cluster.tmp / "config")})
    load = subprocess.Popen([*GERYON, "load", str(cluster.tmp / "mail"), "--app", "kill", "--cluster", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until(lambda: _temp_files(pool) or load.poll() is not None, 120, interval=0.002)
        assert load.poll() is None, "the load ended before a batch was seen being written"
        cluster.nodes["n1"].kill()                                   # kill -9, mid-batch
        _, err = load.communicate(timeout=120)
    finally:
        if load.poll() is None:
            load.kill()
            load.communicate()
    assert load.returncode == 1 and err.startswith("geryon: "), err
    assert not [d for d in read_disks(str(cluster.ndb)) if d.name.endswith(".kill")]
    chunks = [p for p in pool.iterdir() if p.is_dir()]
    assert len(chunks) == 1
    report = check_disk(str(chunks[0]))                              # what the crash left
    assert report.has_manifest and not report.damaged, report.damaged[:3]
    recorded = read_manifest(str(chunks[0])) or {}
    assert all(want[k] == v.sha256 for k, v in recorded.items())

    _pooled(cluster, "n1")                                           # restarted
    with cluster.client() as reg:
        wait_until(lambda: reg.find({"svc": "rstyx", "host": "n1", "pool": "*"}), 20)
    with RemoteFS(cluster.nodes["n1"].url, chunks[0].name, secret) as fs:
        checked = fs.call("check")
    assert checked["has_manifest"] and not checked["damaged"]
    again = cluster.geryon("load", str(cluster.tmp / "mail"), "--app", "kill", "--cluster", "-q", timeout=300)
    assert again.returncode == 0, again.stderr
    d = {d.name: d for d in read_disks(str(cluster.ndb))}["d0.kill"]
    chunk = _pool_chunk(cluster, d.host, d.chunk or "")
    assert chunk != chunks[0]
    recorded = read_manifest(str(chunk)) or {}
    assert {k: v.sha256 for k, v in recorded.items()} == want
    report = check_disk(str(chunk))
    assert report.verified == 8000 and not report.damaged and not report.unrecorded


class _StagingWatch:
    """A load's progress that looks, each time a source file is read, at what is staged on this machine."""

    def __init__(self, staging: pathlib.Path) -> None:
        self.staging = staging
        self.seen: dict[str, int] = {}        # staged data file -> its largest size seen
        self.looks = 0

    def start(self, total: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        self.looks += 1
        for p in self.staging.rglob("*"):
            parts = p.relative_to(self.staging).parts           # the load's own dir, its chunk, the file
            if p.is_file() and len(parts) > 2 and not any(is_internal(part) for part in parts[2:]):
                try:
                    self.seen[p.name] = max(self.seen.get(p.name, 0), p.stat().st_size)
                except FileNotFoundError:
                    pass

    def chunk_done(self, name: str, nbytes: int, files: int) -> None:
        pass


def test_a_cluster_load_sends_small_files_from_memory_and_stages_only_large_ones(cluster: Cluster,
                                                                               secret: bytes) -> None:
    from geryon.disks.diskdb import NdbFile
    from geryon.disks.filebatch import DEFAULT_BATCH_FILE
    from geryon.ingest.load import load_cluster

    cluster.start_registry()
    _pooled(cluster, "n1")
    with cluster.client() as reg:
        wait_until(lambda: reg.find({"svc": "rstyx", "pool": "*"}), 20)
    src = cluster.tmp / "my mail"
    want = _source(src, 400, 3000, 150)
    big = (b"attachment bytes\n" * (DEFAULT_BATCH_FILE // 17 + 2000))
    (src / "box 0" / "a big one.bin").write_bytes(big)          # over the batch limit: staged, streamed
    want["/box 0/a big one.bin"] = hashlib.sha256(big).hexdigest()
    (src / "box 1" / "empty file").write_bytes(b"")
    want["/box 1/empty file"] = hashlib.sha256(b"").hexdigest()
    staging = cluster.tmp / "staging here"
    staging.mkdir()
    watch = _StagingWatch(staging)

    with cluster.client() as reg:
        report = load_cluster([str(src)], "mem", registry=reg, secret=secret, progress=watch,
                              staging_dir=str(staging), names=NdbFile(str(cluster.ndb)))
    assert [d.name for d in report.disks] == ["d0.mem"]
    assert watch.looks == len(want)
    small = {name: size for name, size in watch.seen.items() if name != "a big one.bin"}
    assert not small, f"small files were staged on the client: {sorted(small)[:3]}"
    assert not list(staging.iterdir())                          # the staging directory is gone
    d = {d.name: d for d in read_disks(str(cluster.ndb))}["d0.mem"]
    chunk = _pool_chunk(cluster, d.host, d.chunk or "")
    recorded = read_manifest(str(chunk)) or {}
    assert {k: v.sha256 for k, v in recorded.items()} == want
    check = check_disk(str(chunk))
    assert check.verified == len(want) and not check.damaged and not check.unrecorded


def test_bytes_held_for_a_stopped_node_are_bounded_and_all_arrive_after(cluster: Cluster, secret: bytes) -> None:
    import signal
    import threading

    from geryon.disks.checksum import sum_bytes
    from geryon.ingest.upload import ChunkUpload, Held

    node = cluster.start_node("n0", ["c0"], register=False)
    files = [(f"/in box/m {i:03d}", (f"message {i} ".encode() * 2000)[:20_000 - i]) for i in range(100)]
    held = Held(100_000)
    upload = ChunkUpload(RemoteFS(node.url, "c0", secret), "c0", held=held)
    added: list[str] = []

    def add_all() -> None:
        for key, data in files:
            upload.add(key, "", None, data)
            added.append(key)

    os.kill(node.proc.popen.pid, signal.SIGSTOP)
    adder = threading.Thread(target=add_all)
    try:
        adder.start()
        wait_until(lambda: held.waiting == 1, 30)                # the packer waits for room
        assert len(added) < len(files)
        assert held.bytes < held.limit + 20_000                 # at most one file over the bound
    finally:
        os.kill(node.proc.popen.pid, signal.SIGCONT)
    adder.join(120)
    assert added == [k for k, _ in files]
    upload.finish({k: sum_bytes(b) for k, b in files})          # the node recorded every file exactly
    assert held.bytes == 0 and upload.sent == len(files)
    disk = node.chunks["c0"]
    assert all((disk / k.lstrip("/")).read_bytes() == b for k, b in files)
