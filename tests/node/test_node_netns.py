"""Nodes in separate network namespaces with their own addresses (needs root and iproute2).

Two namespaces joined by a veth pair, 10.77.0.1 and 10.77.0.2, nothing routed outside:
the registry and node n1 live in the first, node n2 and the client in the second.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from node_helpers import Cluster, wait_until


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    tag = f"{os.getpid() % 100000}"
    a, b = f"gny-a{tag}", f"gny-b{tag}"
    made: list[str] = []
    try:
        for ns in (a, b):
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", f"gnya{tag}", "type", "veth", "peer", "name", f"gnyb{tag}")
        for ns, dev, addr in ((a, f"gnya{tag}", "10.77.0.1/24"), (b, f"gnyb{tag}", "10.77.0.2/24")):
            ip("link", "set", dev, "netns", ns)
            ip("-n", ns, "addr", "add", addr, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        yield a, b
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_rcpu_and_remote_disks_across_namespaces(namespaces: tuple[str, str], cluster: Cluster) -> None:
    a, b = namespaces
    in_a, in_b = ["ip", "netns", "exec", a], ["ip", "netns", "exec", b]
    cluster.name_disks("name=d0.mbox kfs master=n1!c0\nname=d1.cpu kfs master=n1!out\n"
                       "name=d2.cpu kfs master=n2!out\n")
    cluster.start_registry(host="10.77.0.1", prefix=in_a)
    n1 = cluster.start_node("n1", ["c0", "out"], host="10.77.0.1", prefix=in_a)
    n2 = cluster.start_node("n2", ["out"], host="10.77.0.2", prefix=in_b)
    assert n1.url.startswith("http://10.77.0.1:") and n2.url.startswith("http://10.77.0.2:")
    (n1.chunks["c0"] / "hello").write_text("hello across namespaces\n")
    wait_until(lambda: _named(cluster, in_b), 15, interval=0.1)
    runs = [cluster.cli("rcpu", "{ cat $n/d0.mbox/hello; echo $GERYON_NODE }", "d0.mbox", prefix=in_b)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert sorted(r.stdout for r in runs) == ["hello across namespaces\nn1\nd1.cpu\n",
                                              "hello across namespaces\nn2\nd2.cpu\n"]
    cat = cluster.cli("cat", "d0.mbox:hello", prefix=in_b)
    assert cat.stdout == "hello across namespaces\n", cat.stderr
    # The namespaces are really apart: the host cannot reach them.
    assert cluster.cli("ls", n1.chunk_url("c0")).returncode == 1


def _named(cluster: Cluster, prefix: list[str]) -> bool:
    r = cluster.cli("ls", "d0.mbox", prefix=prefix, timeout=15)
    return r.returncode == 0 and "hello" in r.stdout
