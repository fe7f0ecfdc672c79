"""A streaming map's command sees exactly its own split (issue 18), in cluster mode.

A real registry and two node daemons: disk `k3.msgs` has its master on n1 and a replica
on n2, both with checksum manifests, so maps run on both nodes. Each of the seed's forms
(`idx $n/<disk>/*`, `find $GERYON_DISK`, the files list) must equal the stdin form and a
sequential reference for small, medium and automatic split sizes; the view of another
node's disk is a verified copy of the split alone.
"""
from __future__ import annotations

import os
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

from geryon.disks.checksum import ChecksumMismatch, record_files
from geryon.mapreduce.inputview import build_view, remove_view
from geryon.disks.remote import RemoteFS
from geryon.records.split import FileRange, Split
from node_helpers import Cluster, wait_until
from shell.idx import index_words

DISK = "k3.msgs"
WORDS = "ash birch cedar Dogwood elm fir Ginkgo hazel ilex juniper kauri larch".split()
FORMS = {
    "stdin": "{ geryon idx }",
    "seed glob": "{ geryon idx $n/k3.msgs/* }",
    "find": "{ find $GERYON_DISK -type f -exec cat {} + | geryon idx }",
    "files list": "{ xargs -d '\\n' geryon idx < $GERYON_FILES_LIST }",
}


@pytest.fixture(autouse=True)
def _geryon_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Node daemons (and their workers' commands) find the `geryon` beside this interpreter."""
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


def corpus(files: int = 10, lines: int = 40, seed: int = 18) -> dict[str, bytes]:
    rng = random.Random(seed)
    out = {}
    for i in range(files):
        name = "two words.txt" if i == 3 else f"m{i:02d}.txt"
        text = "\n".join(" ".join(rng.choice(WORDS) + ("." if rng.random() < 0.2 else "")
                                  for _ in range(rng.randrange(2, 9))) for _ in range(lines))
        out[name] = (text + "\n").encode()
    return out


def fill(path: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (path / name).write_bytes(data)
    record_files(str(path), list(files))


def reference(files: dict[str, bytes]) -> Counter[str]:
    total: Counter[str] = Counter()
    for data in files.values():
        total.update(w.decode() for w in index_words(data))
    return total


def counts_of(out: Path) -> Counter[str]:
    got: Counter[str] = Counter()
    for part in sorted(out.glob("part-*")):
        for line in part.read_text().splitlines():
            word, count = line.split()
            got[word] = int(count)
    return got


def test_cluster_forms_count_each_file_once(cluster: Cluster) -> None:
    files = corpus()
    cluster.start_registry()
    n1 = cluster.start_node("n1", ["c0", "k3"], extra=["--cpus", "1"])
    n2 = cluster.start_node("n2", ["c0", "k3r"], extra=["--cpus", "3"])
    fill(n1.chunks["k3"], files)
    fill(n2.chunks["k3r"], files)
    cluster.name_disks(f"name={DISK} kfs master=n1!k3 replica={DISK}.r\nname={DISK}.r kfs master=n2!k3r\n")
    with cluster.client() as reg:
        wait_until(lambda: len([s for s in reg.find({"chunk": "*"}) if s.get("addr")]) == 2, 15)
        wait_until(lambda: len(reg.find({"svc": "rstyx"})) == 2, 15)
    want = reference(files)
    # kept short: every job starts `geryon idx` once per map task (the local tests cover more sizes)
    runs = [("4K", ["seed glob", "find"]), (None, ["stdin", "files list"])]
    for split, forms in runs:
        for label in forms:
            out = cluster.tmp / f"out-{split}-{label.replace(' ', '_')}"
            size = ["--split-size", split] if split else []
            done = cluster.geryon("mapreduce", "-q", "-R", "3", *size, FORMS[label], "{ geryon agg }", DISK,
                                  "--out", str(out), timeout=120)
            assert done.returncode == 0, done.stderr
            assert counts_of(out) == want, (split, label)
    for node in (n1, n2):           # no view is left on a node
        assert not list((cluster.tmp / f"work-{node.name}").rglob("*.view"))


def test_view_of_another_nodes_disk_is_a_verified_copy_of_the_split(cluster: Cluster, secret: bytes,
                                                                    tmp_path: Path) -> None:
    node = cluster.start_node("n1", ["k3"], register=False)
    big = b"".join(b"kauri %d\n" % i for i in range(2000))
    files = {"two words.txt": b"ash elm\n", "big.txt": big}
    fill(node.chunks["k3"], files)
    remote = RemoteFS(node.url, "k3", secret)
    try:
        split = Split(DISK, (FileRange("/two words.txt", 0, 8), FileRange("/big.txt", 4000, 8000)))
        view = build_view(remote, split, str(tmp_path), "m1.a0")
        try:
            assert (view.linked, view.copied) == (0, 2)
            assert (Path(view.disk_dir) / "two words.txt").read_bytes() == b"ash elm\n"
            cut = (Path(view.disk_dir) / "big.txt").read_bytes()
            start = big.index(b"\n", 3999) + 1
            assert cut == big[start:big.index(b"\n", 7999) + 1]
        finally:
            remove_view(view)
        damaged = bytearray(big)
        damaged[5000] ^= 1
        (node.chunks["k3"] / "big.txt").write_bytes(bytes(damaged))
        with pytest.raises(ChecksumMismatch):
            build_view(remote, split, str(tmp_path), "m1.a1")
    finally:
        remote.close()
