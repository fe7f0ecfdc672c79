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
