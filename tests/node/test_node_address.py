"""The address a node advertises (issue 12 item 2): reachable from other machines, never loopback
when the registry is elsewhere, `--advertise` still wins.

The unit tests give `choose_address` its facts; the namespace test runs three nodes in three
network namespaces (needs root and iproute2) whose host name resolves to loopback (as Debian's
`127.0.1.1`: the namespaces share /etc/hosts, and `unshare --uts` gives each node the host name
`localhost`), with no --listen host and no --advertise.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from geryon.errors import GeryonError
from geryon.node.address import DEFAULT_ROUTE_PROBE, Lookups, choose_address

from node_helpers import NODE_CLI, Cluster, wait_until


def facts(routes: dict[str, str | None], by_name: str | None = "127.0.1.1",
          interfaces: tuple[str, ...] = ("127.0.0.1",)) -> Lookups:
    return Lookups(route_source=lambda to: routes.get(to), hostname_address=lambda: by_name,
                   interface_addresses=lambda: interfaces)


def test_the_route_to_the_registry_comes_first_then_the_default_route() -> None:
    both = facts({"10.0.0.9": "10.0.0.5", DEFAULT_ROUTE_PROBE: "192.168.1.5"}, interfaces=("10.0.0.5", "192.168.1.5"))
    assert choose_address("0.0.0.0", None, "10.0.0.9", both) == "10.0.0.5"
    assert choose_address("0.0.0.0", None, None, both) == "192.168.1.5"
    assert choose_address("0.0.0.0", None, "127.0.0.1", both) == "192.168.1.5"     # a local registry
    assert choose_address("0.0.0.0", "n0.example.org", "10.0.0.9", both) == "n0.example.org"
    assert choose_address("10.0.0.5", None, "10.0.0.9", both) == "10.0.0.5"          # --listen names one


def test_a_host_name_on_loopback_is_never_advertised() -> None:
    # Debian: the host name is 127.0.1.1; no default route; one interface with an address.
    assert choose_address("", None, None, facts({}, "127.0.1.1", ("127.0.0.1", "10.1.2.3"))) == "10.1.2.3"
    # /etc/hosts names an address no interface here has (another namespace's): not that one either
    assert choose_address("", None, None, facts({}, "172.17.0.2", ("127.0.0.1", "10.1.2.3"))) == "10.1.2.3"
    assert choose_address("", None, None, facts({}, "10.1.2.4", ("127.0.0.1", "10.1.2.3", "10.1.2.4"))) == "10.1.2.4"
    # one machine, nothing but loopback, registry local or not known: loopback is right
    assert choose_address("0.0.0.0", None, None, facts({})) == "127.0.0.1"
    assert choose_address("0.0.0.0", None, "localhost", facts({})) == "127.0.0.1"


def test_only_loopback_and_a_registry_elsewhere_is_refused_naming_advertise() -> None:
    with pytest.raises(GeryonError, match=r"only loopback.*registry \(10\.0\.0\.9\).*--advertise ADDR"):
        choose_address("0.0.0.0", None, "10.0.0.9", facts({}))
    with pytest.raises(GeryonError, match=r"listening on 127\.0\.0\.1 only.*--advertise ADDR"):
        choose_address("127.0.0.1", None, "10.0.0.9", facts({"10.0.0.9": "10.0.0.5"}))


FIND_CPUS = """import json, sys
from pathlib import Path
from registry.auth import load_secret
from registry.client import RegistryClient
with RegistryClient(sys.argv[1], secret=load_secret(Path(sys.argv[2])), owner="test") as reg:
    print(json.dumps([[s.name, s.get("url")] for s in reg.find({"svc": "rstyx"})]))
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def spaces() -> Iterator[list[str]]:
    """Three namespaces on one bridge (in a fourth, the hub), 10.78.0.1-3, default route on the
    bridge; and a fifth with nothing but loopback."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test needs root, iproute2 and unshare (CI runs as root)")
    tag = f"{os.getpid() % 100000}"
    hub, lonely = f"gna-h{tag}", f"gna-l{tag}"
    names = [f"gna-{i}{tag}" for i in range(3)]
    made: list[str] = []
    try:
        for ns in (hub, lonely, *names):
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", hub, "link", "add", "br0", "type", "bridge")
        ip("-n", hub, "link", "set", "br0", "up")
        for i, ns in enumerate(names):
            outer, inner = f"gnao{i}{tag}", f"gnai{i}{tag}"
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            ip("link", "set", outer, "netns", hub)
            ip("-n", hub, "link", "set", outer, "master", "br0")
            ip("-n", hub, "link", "set", outer, "up")
            ip("link", "set", inner, "netns", ns)
            ip("-n", ns, "addr", "add", f"10.78.0.{i + 1}/24", "dev", inner)
            ip("-n", ns, "link", "set", inner, "up")
            ip("-n", ns, "route", "add", "default", "dev", inner)
        yield [*names, lonely]
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_three_nodes_in_three_namespaces_register_three_reachable_addresses(spaces: list[str],
                                                                            cluster: Cluster) -> None:
    *names, lonely = spaces
    cluster.start_registry(host="10.78.0.1", prefix=["ip", "netns", "exec", names[0]])
    urls = []
    for i, ns in enumerate(names):
        # the host name resolves to loopback here (`localhost`), no --listen host, no --advertise
        prefix = ["ip", "netns", "exec", ns, "unshare", "--uts", "sh", "-c", 'hostname localhost && exec "$@"', "-"]
        p = cluster._proc([*NODE_CLI, "--name", f"n{i}", "--secret-file", str(cluster.secret_file),
                           "--registry", cluster.registry_url, "--refresh", "0.2",
                           "--work-dir", str(cluster.tmp / f"work-n{i}")], f"node-n{i}", prefix)
        line = p.readline(30)
        assert f"node n{i} listening on http://10.78.0.{i + 1}:" in line, line + p.stderr()
        urls.append(line.split("listening on ", 1)[1].strip())

    def cpus() -> list[list[str]] | None:      # asked from n1's namespace: the host cannot reach these
        r = subprocess.run(["ip", "netns", "exec", names[1], *NODE_CLI[:2], FIND_CPUS, cluster.registry_url,
                            str(cluster.secret_file)], capture_output=True, text=True, timeout=30)
        found = json.loads(r.stdout) if r.returncode == 0 else []
        return found if len(found) == 3 else None

    found = wait_until(cpus, 30, 0.2)
    assert sorted(name for name, _ in found) == [f"tcp!10.78.0.{i}!6676" for i in (1, 2, 3)]
    assert sorted(url for _, url in found) == sorted(urls)
    # each is reachable from another namespace: ask n0's node info from n2's namespace
    probe = subprocess.run(["ip", "netns", "exec", names[2], *NODE_CLI[:2],
                            "import socket,sys; socket.create_connection(('10.78.0.1', 6676), 5).close()"],
                           capture_output=True, text=True, timeout=30)
    assert probe.returncode == 0, probe.stderr

    # a machine that can offer only loopback to a registry on another machine refuses to start
    refused = subprocess.run(["ip", "netns", "exec", lonely, *NODE_CLI, "--name", "alone", "--secret-file",
                              str(cluster.secret_file), "--registry", cluster.registry_url],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "XDG_CONFIG_HOME": str(cluster.tmp / "config")})
    assert refused.returncode == 1, refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("geryon: no address other machines can reach") and "--advertise ADDR" in last, last
