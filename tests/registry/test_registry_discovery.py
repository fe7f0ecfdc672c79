"""Zeroconf: a client with no configuration finds the registry, and finds it again."""
from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from registry.client import RegistryClient
from registry.discovery import DEFAULT_PORT, parse_registry_url
from registry.errors import BadRequest, RegistryUnavailable

from registry_helpers import Cluster, Proc, free_port, wait_until

LOOPBACK = ["127.0.0.1"]


@pytest.mark.parametrize("text, url", [
    ("tcp!host0!7000", "http://host0:7000"), ("tcp!host0", f"http://host0:{DEFAULT_PORT}"),
    ("net!10.0.0.1!registry", f"http://10.0.0.1:{DEFAULT_PORT}"), ("tcp!*!9", "http://127.0.0.1:9"),
    ("http://h:1", "http://h:1"), ("h:2", "http://h:2"), ("https://h", f"https://h:{DEFAULT_PORT}"),
    ("http://[::1]:5", "http://[::1]:5"),
])
def test_registry_addresses(text: str, url: str) -> None:
    assert parse_registry_url(text) == url


@pytest.mark.parametrize("text", ["tcp!", "udp!h!1", "ftp://h", "http://h:notaport", "a!b!c!d"])
def test_bad_registry_addresses(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_registry_url(text)


@pytest.fixture
def cluster(procs: Callable[..., Proc], secret_file: Path, tmp_path: Path) -> Cluster:
    return Cluster(procs, secret_file, tmp_path)


def test_client_without_configuration_finds_the_registry_within_2s(
        cluster: Cluster, secret: bytes, record_property: Callable[[str, object], None]) -> None:
    cluster.registry(mdns=True)
    time.sleep(2.5)                                  # past its announcements: a steady state
    t0 = time.monotonic()
    with RegistryClient(secret=secret, mdns_interfaces=LOOPBACK) as c:
        assert c.index() == []
        took = time.monotonic() - t0
        assert c.url == cluster.url
    record_property("discovery_s", took)
    print(f"MEASURED zeroconf discovery: {took:.3f}s")


def test_other_clusters_are_ignored(cluster: Cluster) -> None:
    cluster.registry(mdns=True)
    with RegistryClient(secret=b"another cluster's secret!", mdns_interfaces=LOOPBACK,
                        discovery_timeout=1.0, request_timeout=1.0) as c:
        with pytest.raises(RegistryUnavailable, match="no registry"):
            c.index()


def test_registrant_rediscovers_a_registry_back_on_another_address(
        cluster: Cluster, secret: bytes, record_property: Callable[[str, object], None]) -> None:
    first = cluster.registry(mdns=True)
    env = {"GERYON_MDNS_INTERFACES": "127.0.0.1"}
    cluster.register("tcp!h0!1", "name", "h0", discover=True, env=env)
    first.signal(signal.SIGKILL)
    first.popen.wait(5)
    port = free_port()
    t0 = time.monotonic()
    cluster.registry(port=port, mdns=True)
    with RegistryClient(f"http://127.0.0.1:{port}", secret=secret) as viewer:
        wait_until(lambda: [s.name for s in viewer.index()] == ["tcp!h0!1"], 8)
    took = time.monotonic() - t0
    record_property("rediscovery_s", took)
    print(f"MEASURED re-announce to a registry on a new address: {took:.3f}s")
