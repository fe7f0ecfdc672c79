"""dsh and `geryon loads` against real nodes reporting pinned loads (`--fake-load`)."""
from __future__ import annotations

import io

from geryon.cluster.dsh import Dsh
from geryon.cluster.pick import Weight
from node_helpers import Cluster, wait_until

WEIGHTS = "node=n1 load=10.0\nnode=n2 load=1.0 mem=0\n"


def start(cluster: Cluster) -> None:
    cluster.name_disks(WEIGHTS)
    cluster.start_registry()
    for name, load in (("n1", "0.2"), ("n2", "0.9"), ("n3", "0.5")):
        # a long decay, so what a dispatch adds is still there however slow this machine is
        cluster.start_node(name, [], extra=["--cpus", "1", "--fake-load", load, "--virtual-seconds", "600"])
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"svc": "rstyx"})) == 3, 10)


def test_dsh_picks_lowest_weighted_load_then_another_node(cluster: Cluster) -> None:
    start(cluster)
    loads = cluster.cli("loads")
    assert loads.returncode == 0, loads.stderr
    lines = loads.stdout.splitlines()
    assert lines[0].split() == ["host", "os/arch", "ncpu", "load", "virtual", "memfree", "weight", "score"]
    assert [line.split()[0] for line in lines[1:]] == ["n3", "n2", "n1"]   # 0.5, 0.9, 10*0.2
    assert [line.split()[3:5] for line in lines[1:]] == [["0.50", "0.00"], ["0.90", "0.00"], ["0.20", "0.00"]]
    first = cluster.cli("dsh", "--", "sh", "-c", "echo $GERYON_NODE")
    second = cluster.cli("dsh", "--", "sh", "-c", "echo $GERYON_NODE; exit 4")
    assert (first.returncode, first.stdout) == (0, "n3\n"), first.stderr
    assert (second.returncode, second.stdout) == (4, "n2\n"), second.stderr
    assert "ran on n2" in second.stderr
    after = {line.split()[0]: line.split() for line in cluster.cli("loads").stdout.splitlines()[1:]}
    assert 0.5 < float(after["n3"][4]) <= 1 and 0.5 < float(after["n2"][4]) <= 1   # each counted once (decaying over 600 s)
    assert (after["n3"][3], after["n1"][4]) == ("0.50", "0.00")                 # the real load stays apart
    # rcpu's least-loaded mode is dsh's chooser: n3 scores 1.5 now, n2 1.9, n1 2.0
    third = cluster.cli("rcpu", "--pick", "load", "echo $GERYON_NODE")
    assert (third.returncode, third.stdout) == (0, "n3\n"), third.stderr


def test_dsh_api_in_process_spreads_quick_calls(cluster: Cluster, secret: bytes) -> None:
    start(cluster)
    with cluster.client() as reg, Dsh(reg, secret, weights={"n1": Weight(load=10.0)}) as dsh:
        assert [r.cpu.host for r in dsh.loads()] == ["n3", "n2", "n1"]
        hosts = [dsh.run("echo $GERYON_NODE", stdout=io.BytesIO(), stderr=io.BytesIO()).host
                 for _ in range(2)]
    assert hosts == ["n3", "n2"]
