"""rcpu against real node daemons on loopback: spreading, dead cpus, statuses, mounted disks."""
from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator

import pytest

from geryon.errors import GeryonError
from geryon.cluster.rcpu import CpuPool, Rcpu, rcpu
from node_helpers import Cluster, wait_until

NDB = """name=d0.mbox kfs
	master=n1!c0
name=d1.cpu kfs master=n1!out
name=d2.cpu kfs master=n2!out
name=d3.cpu kfs master=n3!out
name=d4.cpu kfs master=n3!out2
"""


@pytest.fixture
def three(cluster: Cluster) -> Iterator[Cluster]:
    cluster.name_disks(NDB)
    cluster.start_registry()
    cluster.start_node("n1", ["c0", "out"])
    cluster.start_node("n2", ["out"])
    cluster.start_node("n3", ["out", "out2"])
    (cluster.nodes["n1"].chunks["c0"] / "hello.txt").write_text("hello from d0\n")
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"svc": "rstyx"})) == 3, 10)
        wait_until(lambda: all(s.get("addr") for s in reg.find({"chunk": "*"})) and
                   len(reg.find({"chunk": "*"})) == 5, 10)
    yield cluster


def run(runner: Rcpu, cmd: str, disks: tuple[str, ...] = ()) -> tuple[int, str, str, str, str | None]:
    out, err = io.BytesIO(), io.BytesIO()
    result = runner.run(cmd, disks, stdout=out, stderr=err)
    return result.status, out.getvalue().decode(), err.getvalue().decode(), result.host, result.cpudisk


def test_six_commands_spread_two_two_two(three: Cluster, secret: bytes) -> None:
    with three.client() as reg, Rcpu(reg, secret) as runner:
        hosts = [run(runner, "echo $GERYON_NODE")[1].strip() for _ in range(6)]
    assert Counter(hosts) == {"n1": 2, "n2": 2, "n3": 2}
    assert hosts[:3] == hosts[3:]                      # round robin order repeats


def test_output_disk_round_robin_per_host(three: Cluster, secret: bytes) -> None:
    with three.client() as reg, Rcpu(reg, secret) as runner:
        seen = [run(runner, "echo x > $n/$cpudisk/f; ls $n")[3:] for _ in range(6)]
    by_host: dict[str, list[str | None]] = {}
    for host, disk in seen:
        by_host.setdefault(host, []).append(disk)
    assert by_host == {"n1": ["d1.cpu", "d1.cpu"], "n2": ["d2.cpu", "d2.cpu"], "n3": ["d3.cpu", "d4.cpu"]}
    assert (three.nodes["n3"].chunks["out2"] / "f").read_text() == "x\n"


def test_killed_node_is_skipped_at_once(three: Cluster, secret: bytes) -> None:
    with three.client() as reg, Rcpu(reg, secret) as runner:
        assert len(runner.pool.live()) == 3
        three.nodes["n2"].kill()
        hosts = [run(runner, "echo $GERYON_NODE")[1].strip() for _ in range(4)]
    assert "n2" not in hosts and set(hosts) == {"n1", "n3"}


def test_dead_cpu_leaves_the_pool_from_registry_events(three: Cluster, secret: bytes) -> None:
    with three.client() as reg, CpuPool(reg) as pool:
        assert {c.host for c in pool.live()} == {"n1", "n2", "n3"}
        three.nodes["n3"].kill()
        wait_until(lambda: {c.host for c in pool.live()} == {"n1", "n2"}, 8)


def test_exit_status_and_stderr_come_back(three: Cluster, secret: bytes) -> None:
    with three.client() as reg, Rcpu(reg, secret) as runner:
        status, out, err, _, _ = run(runner, "{ echo out; echo oops >&2; exit 3 }")
        assert (status, out, err) == (3, "out\n", "oops\n")
        status, _, _, _, _ = run(runner, "kill -9 $$")
        assert status == 128 + 9


def test_disk_is_seen_on_its_own_node_and_on_others(three: Cluster, secret: bytes) -> None:
    with three.client() as reg, Rcpu(reg, secret) as runner:
        results = [run(runner, "cat $n/d0.mbox/hello.txt; echo $GERYON_NODE", ("d0.mbox",)) for _ in range(3)]
    assert sorted(r[1].split("\n")[1] for r in results) == ["n1", "n2", "n3"]
    assert all(r[0] == 0 and r[1].startswith("hello from d0\n") for r in results)


def test_unknown_disk_is_refused(three: Cluster, secret: bytes) -> None:
    with three.client() as reg, Rcpu(reg, secret) as runner, pytest.raises(GeryonError, match="nosuch"):
        runner.run("true", ["nosuch.disk"])


def test_rcpu_function_round_robins_across_calls(three: Cluster, secret: bytes) -> None:
    with three.client() as reg:
        hosts = []
        for _ in range(3):
            out = io.BytesIO()
            rcpu("echo $GERYON_NODE", registry=reg, secret=secret, stdout=out, stderr=io.BytesIO())
            hosts.append(out.getvalue().decode().strip())
    assert sorted(hosts) == ["n1", "n2", "n3"]


def test_host_without_cpu_disk_gives_cpudisk_a_directory_of_its_own(cluster: Cluster, secret: bytes) -> None:
    """No `*.cpu` disk on the host: `> $cpudisk/out.txt` must not write `/out.txt` on the node."""
    import os
    from pathlib import Path

    assert not os.path.exists("/out.txt")
    cluster.start_registry()
    cluster.start_node("lone", [])
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"svc": "rstyx"})) == 1, 10)
        with Rcpu(reg, secret) as runner:
            first = run(runner, "echo x > $cpudisk/out.txt; echo y > $n/$cpudisk/two.txt; echo $GERYON_CPUDISK_DIR")
            second = run(runner, "echo $GERYON_CPUDISK_DIR")
    assert first[0] == 0, first[2]
    assert not os.path.exists("/out.txt")
    where = Path(first[1].strip())
    assert (where / "out.txt").read_text() == "x\n" and (where / "two.txt").read_text() == "y\n"
    assert where.parent.name == "output" and where.name.startswith("rcpu-")
    assert second[1].strip() != str(where)          # one directory per run
