"""zeroconf answers only on the interfaces a registry listens on (needs root and iproute2).

Two network namespaces joined by a veth pair (10.78.0.1 in the first, 10.78.0.2 in the
second). A registry listening on the veth address is found by a node started in the
other namespace with no --registry; a registry forced to 127.0.0.1 is announced on
loopback (found there) and never on the veth. One listening on IPv6 loopback only is announced
nowhere (zeroconf here announces IPv4 addresses, where it does not listen) and is reached by
the URL it prints.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.auth import cluster_id, load_secret
from tests.node.node_helpers import GERYON, NODE_CLI, Cluster, wait_until

DISCOVER = [sys.executable, "-c", "import sys; from registry.discovery import discover; "
            "print(discover(float(sys.argv[1]), cluster=sys.argv[2], interfaces=sys.argv[3:] or None))"]
BROWSE = [sys.executable, "-c", "import sys, time; from zeroconf import Zeroconf, ServiceBrowser, IPVersion; "
          "from registry.discovery import SERVICE_TYPE; names = set(); zc = Zeroconf(ip_version=IPVersion.V4Only); "
          "ServiceBrowser(zc, SERVICE_TYPE, handlers=[lambda zeroconf, service_type, name, state_change: "
          "names.add(name)]); time.sleep(float(sys.argv[1])); zc.close(); print(sorted(names))"]
"""Every Geryon service name announced on any interface, resolved or not."""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[tuple[list[str], list[str]]]:
    """Two namespaces joined by a veth pair; yields the `ip netns exec` prefix of each."""
    tag = f"{os.getpid() % 100000}"
    a, b = f"gnm-a{tag}", f"gnm-b{tag}"
    made: list[str] = []
    try:
        for ns in (a, b):
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", f"gnma{tag}", "type", "veth", "peer", "name", f"gnmb{tag}")
        for ns, dev, addr in ((a, f"gnma{tag}", "10.78.0.1/24"), (b, f"gnmb{tag}", "10.78.0.2/24")):
            ip("link", "set", dev, "netns", ns)
            ip("-n", ns, "addr", "add", addr, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        yield ["ip", "netns", "exec", a], ["ip", "netns", "exec", b]
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", f"gnma{tag}"], capture_output=True, timeout=10)


def _mdns_registry(cluster: Cluster, host: str, prefix: list[str]) -> str:
    """A registry advertising over zeroconf with no --mdns-interface: where it listens decides."""
    p = cluster._proc([*GERYON, "registry", "serve",
                       "--listen", f"{host}:0", "--secret-file", str(cluster.secret_file)], "registry", prefix)
    line = p.readline()
    assert "listening on" in line, line + p.stderr()
    return line.split("listening on", 1)[1].split()[0]


def _discover(prefix: list[str], cluster: str, *interfaces: str, timeout: float = 3) -> str:
    done = subprocess.run([*prefix, *DISCOVER, str(timeout), cluster, *interfaces], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_registry_on_the_veth_is_found_from_the_peer_namespace(
        namespaces: tuple[list[str], list[str]], cluster: Cluster, tmp_path: Path) -> None:
    in_a, in_b = namespaces
    url = _mdns_registry(cluster, "10.78.0.1", in_a)
    # A node in the other namespace, told nothing about the registry, finds it and registers.
    work = tmp_path / "work-n2"
    cluster._proc([*NODE_CLI, "--name", "n2", "--listen", "10.78.0.2:0", "--secret-file",
                   str(cluster.secret_file), "--work-dir", str(work), "--refresh", "0.2"], "node-n2", in_b)

    def registered() -> bool:
        found = subprocess.run([*in_a, *GERYON, "regquery", "svc", "rstyx"], capture_output=True, text=True,
                               timeout=30, env={**os.environ, "GERYON_REGISTRY": url,
                                                "GERYON_SECRET_FILE": str(cluster.secret_file)})
        return found.returncode == 0 and "host n2" in found.stdout

    wait_until(registered, 60, interval=0.2)


def test_a_registry_on_loopback_is_not_announced_on_the_veth(
        namespaces: tuple[list[str], list[str]], cluster: Cluster) -> None:
    in_a, in_b = namespaces
    url = _mdns_registry(cluster, "127.0.0.1", in_a)
    cid = cluster_id(load_secret(cluster.secret_file))
    # It does advertise, on loopback (where it listens) ...
    assert url in _discover(in_a, cid, "127.0.0.1", timeout=10)
    # ... and nothing of it reaches the other namespace, browsing on every interface there.
    assert _discover(in_b, cid, timeout=3) == "[]"



def test_a_registry_on_ipv6_loopback_is_announced_nowhere_and_reached_by_its_url(
        namespaces: tuple[list[str], list[str]], cluster: Cluster, tmp_path: Path) -> None:
    in_a, in_b = namespaces
    url = _mdns_registry(cluster, "::1", in_a)
    assert url.startswith("http://[::1]:"), url            # a URL a client can use as it is
    cid = cluster_id(load_secret(cluster.secret_file))
    # A node beside it on ::1, told the printed URL, registers there.
    cluster._proc([*NODE_CLI, "--name", "v6", "--listen", "::1:0", "--registry", url, "--secret-file",
                   str(cluster.secret_file), "--work-dir", str(tmp_path / "work-v6"), "--refresh", "0.2"],
                  "node-v6", in_a)

    def registered() -> bool:
        found = subprocess.run([*in_a, *GERYON, "regquery", "svc", "rstyx"], capture_output=True, text=True,
                               timeout=30, env={**os.environ, "GERYON_REGISTRY": url,
                                                "GERYON_SECRET_FILE": str(cluster.secret_file)})
        return found.returncode == 0 and "host v6" in found.stdout and "url http://[::1]:" in found.stdout

    wait_until(registered, 60, interval=0.2)
    # Not announced on any IPv4 interface of its own namespace, nor across the veth: not even
    # its name (before, the name, cluster id and port went out on every interface).
    assert _discover(in_a, cid, timeout=3) == "[]"
    for prefix in (in_a, in_b):
        names = subprocess.run([*prefix, *BROWSE, "4"], capture_output=True, text=True, timeout=60)
        assert names.returncode == 0 and names.stdout.strip() == "[]", names.stdout + names.stderr
