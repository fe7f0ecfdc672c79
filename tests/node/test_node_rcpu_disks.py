"""rcpu's output disks from the cpu pool's registry events: no registry query per run, and
disks named or dropped while an `Rcpu` runs are seen by its next runs (real daemons)."""
from __future__ import annotations

import io
from typing import Any

from geryon.cluster.rcpu import Rcpu
from node_helpers import Cluster, wait_until

NDB = """name=d1.cpu kfs master=n1!out
name=d2.cpu kfs master=n2!out
"""


class CountingRegistry:
    """A real `RegistryClient`, with the `find` calls made through it counted."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.finds: list[Any] = []

    def find(self, query: Any = ()) -> Any:
        self.finds.append(query)
        return self.client.find(query)

    def watch(self, **kwargs: Any) -> Any:
        return self.client.watch(**kwargs)


def disks_of(runner: Rcpu, host: str, runs: int) -> list[str | None]:
    seen = []
    for _ in range(runs * 2):
        out = io.BytesIO()
        result = runner.run("echo $GERYON_NODE", stdout=out, stderr=io.BytesIO())
        assert result.status == 0
        if result.host == host:
            seen.append(result.cpudisk)
    return seen[:runs]


def test_runs_ask_the_registry_nothing_and_follow_disks_named_and_dropped(cluster: Cluster, secret: bytes) -> None:
    cluster.name_disks(NDB)
    cluster.start_registry()
    cluster.start_node("n1", ["out"])
    cluster.start_node("n2", ["out", "spare-1"])
    with cluster.client() as client:
        wait_until(lambda: len(client.find({"svc": "rstyx"})) == 2, 10)
        wait_until(lambda: len([s for s in client.find({"chunk": "*"}) if s.get("addr")]) == 2, 10)
        reg = CountingRegistry(client)
        with Rcpu(reg, secret) as runner:
            started = len(reg.finds)
            assert disks_of(runner, "n2", 3) == ["d2.cpu"] * 3
            assert reg.finds[started:] == []               # every run's disk came from the pool

            version = client.ndb()["version"]
            client.edit_ndb([], "name=d5.cpu kfs master=n2!spare-1\n", base=version)
            wait_until(lambda: any(s.name == "d5.cpu" and s.get("addr") for s in runner.pool.cpu_disks() or []), 10)
            assert disks_of(runner, "n2", 4) == ["d5.cpu", "d2.cpu", "d5.cpu", "d2.cpu"]

            client.edit_ndb(["d5.cpu"], "", base=client.ndb()["version"])
            wait_until(lambda: all(s.name != "d5.cpu" for s in runner.pool.cpu_disks() or []), 10)
            assert disks_of(runner, "n2", 2) == ["d2.cpu", "d2.cpu"]
            assert reg.finds[started:] == []


def test_a_host_the_pool_knows_no_disk_of_is_asked_about(cluster: Cluster, secret: bytes) -> None:
    """No `*.cpu` disk known on the host: the registry is asked, as before (a disk
    registered a moment ago, not yet seen in the events), and the run still works."""
    cluster.start_registry()
    cluster.start_node("lone", [])
    with cluster.client() as client:
        wait_until(lambda: len(client.find({"svc": "rstyx"})) == 1, 10)
        reg = CountingRegistry(client)
        with Rcpu(reg, secret) as runner:
            started = len(reg.finds)
            assert disks_of(runner, "lone", 2) == [None, None]      # four runs, all on lone
            assert reg.finds[started:] == [(("chunk", "*"),)] * 4
