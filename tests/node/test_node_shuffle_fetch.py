"""A reducer's shuffle fetch (`geryon.node.worker.http_range`, one signed Range request through
`geryon.net.connection.NodeConnection`) against a real node daemon: the segment's bytes, and each
way it fails as a `FetchFailed` naming the map output (the driver then runs that map again)."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from geryon.disks.chunk import TEMP_MARK
from geryon.mapreduce.reducetask import FetchFailed
from geryon.mapreduce.segments import Segment
from geryon.node.worker import FETCH_BLOCK, http_range
from node_helpers import Cluster
from registry.auth import load_secret

DATA = bytes(range(256)) * (3 * FETCH_BLOCK // 256)
"""A 3 MiB map output: a segment spans several of the fetch's blocks."""


def _map_output(cluster: Cluster, node: str, job: str = "wc-1", name: str = "m0.a0.out") -> str:
    staging = cluster.tmp / f"work-{node}" / "output" / f"{TEMP_MARK}{job}"
    staging.mkdir(parents=True, exist_ok=True)
    (staging / name).write_bytes(DATA)
    return f"{cluster.nodes[node].url}/v1/jobs/{job}/data/{name}"


def _segment(offset: int, length: int) -> Segment:
    return Segment(offset, length, 1, "bytes")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_segment_is_read_from_another_node(cluster: Cluster, secret_file: Path) -> None:
    cluster.start_node("n0", register=False)
    location = _map_output(cluster, "n0")
    secret = load_secret(secret_file)
    seg = _segment(1000, 2 * FETCH_BLOCK + 77)
    blocks = list(http_range(location, seg, secret))
    assert b"".join(blocks) == DATA[1000:1000 + seg.length]
    assert len(blocks) == 3 and max(map(len, blocks)) <= FETCH_BLOCK
    assert b"".join(http_range(location, _segment(len(DATA) - 5, 5), secret)) == DATA[-5:]


def test_each_failure_is_a_fetch_failure_naming_the_output(cluster: Cluster, secret_file: Path) -> None:
    port = _free_port()
    node = cluster.start_node("n0", register=False, extra=("--listen", f"127.0.0.1:{port}"))
    location = _map_output(cluster, "n0")
    secret = load_secret(secret_file)
    with pytest.raises(FetchFailed, match="HTTP 404") as info:
        list(http_range(location.replace("m0.a0.out", "m9.a0.out"), _segment(0, 10), secret))
    assert "m9.a0.out" in str(info.value)
    with pytest.raises(FetchFailed, match="HTTP 401"):
        list(http_range(location, _segment(0, 10), b"not the cluster secret" * 2))
    with pytest.raises(FetchFailed, match="truncated"):
        list(http_range(location, _segment(len(DATA) - 10, 20), secret))
    assert b"".join(http_range(location, _segment(0, 10), secret)) == DATA[:10]

    # The node restarts on the same port: the first fetch is refused (signed for its earlier run)
    # and fails, as it always did; the next one signs for the new run.
    node.kill()
    with pytest.raises(FetchFailed, match="node unreachable"):
        list(http_range(location, _segment(0, 10), secret))
    cluster.start_node("n0", register=False, extra=("--listen", f"127.0.0.1:{port}"))
    assert _map_output(cluster, "n0") == location   # (a node sweeps its jobs' leftovers when it starts)
    with pytest.raises(FetchFailed, match="HTTP 401"):
        list(http_range(location, _segment(0, 10), secret))
    assert b"".join(http_range(location, _segment(0, 10), secret)) == DATA[:10]
