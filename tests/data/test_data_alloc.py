"""Chunk allocation on real nodes: pools, `disk new --cluster`, `load --cluster --replicas K`."""
from __future__ import annotations

import pathlib
import signal
from collections import Counter

import pytest

from geryon.disks.chunk import read_capacity
from geryon.disks.diskdb import read_disks
from geryon.disks.failover import open_failover
from geryon.disks.placement import ChunkSlot, NoRoom, place
from geryon.records.readers import read_records
from geryon.records.split import list_files, plan_splits

from tests.node.node_helpers import Cluster, wait_until


@pytest.fixture(autouse=True)
def _no_thread_leaks(no_thread_leaks: None) -> None:
    """Every test here must stop the threads it starts."""




def pooled(c: Cluster, name: str, size: str, chunks: tuple[str, ...] = ()) -> None:
    c.start_node(name, chunks, capacity=8 << 20, extra=["--chunk-pool", str(c.tmp / f"pool-{name}"), "--pool-size", size])


def pool_room(c: Cluster, host: str) -> int:
    with c.client() as reg:
        return int(wait_until(lambda: reg.find({"svc": "rstyx", "host": host, "pool": "*"}), 10)[0].get("pool") or -1)


def test_place_gives_a_free_chunk_one_copy_and_a_pool_many() -> None:
    slots = [ChunkSlot("a", "c0", 100, single=True), ChunkSlot("b", "", 250)]
    assert place(50, slots, 2) == [slots[1], slots[0]]
    assert place(50, slots[:1], 1) == [slots[0]]
    with pytest.raises(NoRoom):
        place(50, slots[:1], 2)
    assert place(50, slots[1:], 3) == [slots[1]] * 3


def test_disk_new_on_the_cluster_picks_the_host_with_most_room(cluster: Cluster) -> None:
    cluster.start_registry()
    pooled(cluster, "n1", "4M")
    pooled(cluster, "n2", "16M")
    cluster.start_node("n3", ["busy"], capacity=1 << 20)
    (cluster.nodes["n3"].chunks["busy"] / "data").write_text("in use\n")
    assert pool_room(cluster, "n1") == 4 << 20 and pool_room(cluster, "n2") == 16 << 20

    made = cluster.geryon("disk", "new", "d0.mail", "--cluster", "--size", "6M")
    assert made.returncode == 0, made.stderr
    assert made.stdout == "n2!chunk0\n"
    assert read_capacity(str(cluster.tmp / "pool-n2" / "chunk0")) == 6 << 20
    assert [(d.name, d.master) for d in read_disks(str(cluster.ndb))] == [("d0.mail", "n2!chunk0")]
    with cluster.client() as reg:
        wait_until(lambda: reg.find({"resource": "kfs", "name": "n2", "id": "chunk0", "capacity": str(6 << 20)}), 30)
        wait_until(lambda: [s for s in reg.find({"chunk": "*"}) if s.name == "d0.mail" and s.get("addr")], 30)
        wait_until(lambda: reg.find({"svc": "rstyx", "host": "n2", "pool": str(10 << 20)}), 30)

    second = cluster.geryon("disk", "new", "d1.mail", "--cluster", "--size", "6M")
    assert second.stdout == "n2!chunk1\n", second.stderr        # 10M left on n2, 4M on n1
    on_n1 = cluster.geryon("disk", "new", "d2.mail", "--cluster", "--size", "1M", "--host", "n1")
    assert on_n1.stdout == "n1!chunk0\n", on_n1.stderr
    full = cluster.geryon("disk", "new", "big", "--cluster", "--size", "1G")
    assert full.returncode == 1 and full.stderr.startswith("geryon: no room for copy 1 of 1 of a 1073741824-byte")
    taken = cluster.geryon("disk", "new", "d0.mail", "--cluster")
    assert taken.returncode == 1 and "already named" in taken.stderr
    assert [d.name for d in read_disks(str(cluster.ndb))] == ["d0.mail", "d1.mail", "d2.mail"]

    # A pool chunk outlives its node's restart.
    cluster.nodes["n2"].proc.send(signal.SIGTERM)
    cluster.nodes["n2"].proc.popen.wait(10)
    pooled(cluster, "n2", "16M")
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"resource": "kfs", "name": "n2"})) == 2, 10)


def test_load_on_the_cluster_places_copies_on_distinct_hosts(cluster: Cluster, secret: bytes, corpus: pathlib.Path,
                                                             corpus_counts: Counter) -> None:
    cluster.start_registry()
    for n in ("n1", "n2", "n3"):
        pooled(cluster, n, "64M")
    for n in ("n1", "n2", "n3"):
        pool_room(cluster, n)

    loaded = cluster.geryon("load", str(corpus), "--app", "src", "--chunk", "512K", "--replicas", "2", "--cluster")
    assert loaded.returncode == 0, loaded.stderr
    names = loaded.stdout.split()
    assert len(names) >= 3 and names[0] == "d0.src"
    disks = {d.name: d for d in read_disks(str(cluster.ndb))}
    masters = [disks[n] for n in names]
    assert all(d.path is None and len(d.replicas) == 1 for d in masters)
    for d in masters:
        r = disks[d.replicas[0]]
        assert r.replica_of == d.name and r.host != d.host
    per_host = Counter(d.host for d in disks.values())
    assert max(per_host.values()) - min(per_host.values()) <= 1, per_host      # balanced by room

    counts: Counter = Counter()
    with cluster.client() as reg:
        for name in names:
            disk = open_failover(name, reg, secret, str(cluster.ndb))
            with disk.fs:
                for split in plan_splits(name, list_files(disk.fs), 64 << 20, cut_files=False):
                    for _key, text in read_records(disk.fs, split, "file"):
                        counts.update(str(text).split())
    assert counts == corpus_counts

    # Not enough hosts for the copies asked: nothing is named, every claimed chunk is given back.
    before = cluster.ndb.read_text()
    refused = cluster.geryon("load", str(corpus), "--app", "more", "--chunk", "512K", "--replicas", "4", "--cluster")
    assert refused.returncode == 1 and "4 copies of a 524288-byte chunk need 4 hosts with room" in refused.stderr
    assert cluster.ndb.read_text() == before
    held = sum(1 for n in ("n1", "n2", "n3") for p in (cluster.tmp / f"pool-{n}").iterdir() if p.is_dir())
    assert held == len(disks)

    # Loading the app again replaces its disks; the old chunks are emptied for reuse.
    old = {(d.host, d.chunk) for d in disks.values()}
    again = cluster.geryon("load", str(corpus), "--app", "src", "--chunk", "512K", "--cluster", "-q")
    assert again.returncode == 0, again.stderr
    now = {d.name: d for d in read_disks(str(cluster.ndb))}
    assert set(now) == set(names) and not ({(d.host, d.chunk) for d in now.values()} & old)
    for host, chunk in old:
        files = [p for p in (cluster.tmp / f"pool-{host}" / chunk).rglob("*") if p.is_file()]
        assert [p.name for p in files] == [".geryon-disk"]
