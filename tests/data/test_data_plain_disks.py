"""`geryon node --disk NAME=DIR` of a plain directory (issue 12 item 6).

An empty directory is made a chunk when the node starts (a load can fill it); one holding
files is served as it is, and a load that finds no room says, before packing anything, that
it is a plain directory and what to serve instead — never `made d0.APP` then `no room`.
"""
from __future__ import annotations

import pathlib

import pytest

from geryon.disks.chunk import DEFAULT_CAPACITY, read_capacity

from tests.node.node_helpers import Cluster, wait_until


@pytest.fixture(autouse=True)
def _no_thread_leaks(no_thread_leaks: None) -> None:
    """Every test here must stop the threads it starts."""


def _mail(path: pathlib.Path, n: int = 30) -> pathlib.Path:
    path.write_text("".join(f"From u{i}@example.org Mon Jan  1 00:00:00 2024\nSubject: m{i}\n\nbody {i} words\n\n"
                            for i in range(n)))
    return path


def test_an_empty_directory_is_made_a_chunk_that_a_load_fills(cluster: Cluster) -> None:
    cluster.start_registry()
    empty = cluster.tmp / "n1-in0"
    empty.mkdir()
    node = cluster.start_node("n1", ["in0"])
    assert read_capacity(str(empty)) == DEFAULT_CAPACITY
    assert f"disk in0: {empty} was an empty directory: made it a 64M chunk" in node.proc.stderr()
    with cluster.client() as reg:
        wait_until(lambda: reg.find({"resource": "kfs", "name": "n1", "id": "in0", "capacity": str(DEFAULT_CAPACITY)}),
                   10)
    loaded = cluster.geryon("load", str(_mail(cluster.tmp / "mail.mbox")), "--app", "mbox", "--cluster", "-q")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == "d0.mbox\n"
    assert (empty / "mail.mbox").read_text() == (cluster.tmp / "mail.mbox").read_text()


def test_a_plain_directory_with_files_is_named_before_anything_is_packed(cluster: Cluster) -> None:
    cluster.start_registry()
    data = cluster.tmp / "n1-in0"
    data.mkdir()
    (data / "old.txt").write_text("the user's own files\n")
    cluster.start_node("n1", ["in0"])
    assert read_capacity(str(data)) is None                     # not touched: it holds files
    with cluster.client() as reg:
        wait_until(lambda: reg.find({"resource": "kfs", "name": "n1", "id": "in0"}), 10)
    refused = cluster.geryon("load", str(_mail(cluster.tmp / "mail.mbox")), "--app", "mbox", "--cluster")
    assert refused.returncode == 1
    assert "made d0.mbox" not in refused.stderr, refused.stderr
    [line] = [ln for ln in refused.stderr.splitlines() if ln.startswith("geryon: ")]
    assert line.startswith("geryon: no room for copy 1 of 1"), line
    assert "n1!in0 is a plain directory holding files, not a chunk" in line and "--disk NAME=EMPTY_DIR" in line
    assert sorted(p.name for p in data.iterdir()) == ["old.txt"]
