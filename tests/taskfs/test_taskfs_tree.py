"""Node trees: `geryon node --parent`, aggregated `geryon status`, children dying or freezing."""
from __future__ import annotations

import json
import signal

from taskfs_helpers import Tree, run_cli, timed, wait_until

LIVENESS = 5.0
"""DESIGN's liveness limit: heartbeat 1 s, dead after 5 s."""


def test_status_counts_every_node_and_follows_a_killed_leaf(fresh_tree: Tree) -> None:
    t = fresh_tree
    r = t.cli("status", "--node", t.root.url)
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.splitlines()
    os_name, arch, count = line.split()
    assert count == "4" and os_name and arch                     # `Linux 386 4`: the seed's format
    doc = json.loads(t.cli("status", "--node", "root", "--json").stdout)        # by name, for scripts
    assert doc == [{"os": os_name, "arch": arch, "nodes": 4, "cpus": 4, "free": 4}]
    tree = t.get(t.root, "/v1/tree")
    assert sorted(c["name"] for c in tree["children"]) == ["a", "b"]            # immediate children only
    assert t.get(t.a, "/v1/tree")["counts"][0]["nodes"] == 2                    # a and g

    t.g.kill()
    took = timed(lambda: t.cli("status", "--node", t.root.url).stdout == f"{os_name} {arch} 3\n", LIVENESS)
    print(f"status reflected a killed leaf after {took:.2f}s")


def test_a_frozen_child_is_dropped_after_missed_heartbeats(fresh_tree: Tree) -> None:
    t = fresh_tree
    t.b.proc.popen.send_signal(signal.SIGSTOP)
    try:
        took = timed(lambda: t.node_count() == 3, LIVENESS + 2)
        assert took > 1.0                                           # not at once: the socket is still open
        print(f"a frozen child was dropped after {took:.2f}s")
    finally:
        t.b.proc.popen.send_signal(signal.SIGCONT)
    wait_until(lambda: t.node_count() == 4, 10)                      # it comes back on its own


def test_unknown_parent_is_refused_at_start(cluster) -> None:  # type: ignore[no-untyped-def]
    cluster.start_registry()
    r = run_cli(cluster, "node", "--name", "lost", "--listen", "127.0.0.1:0", "--parent", "nosuch",
                "--work-dir", str(cluster.tmp / "work-lost"), timeout=30)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == "geryon: parent nosuch: no such node in the registry"
    r = run_cli(cluster, "node", "--name", "lost", "--listen", "127.0.0.1:0", "--parent", "tcp!x", "--standalone")
    assert r.returncode == 1 and "not tcp!host!port" in r.stderr


def test_a_child_with_the_wrong_secret_never_joins(cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from registry.auth import create_secret
    cluster.start_registry()
    root = cluster.start_node("root", [], extra=["--cpus", "1"])
    other = tmp_path / "other-secret"
    create_secret(other)
    intruder = cluster.start_node("intruder", [], register=False,
                                  extra=["--parent", root.url, "--secret-file", str(other)])
    wait_until(lambda: "authentication failed" in intruder.proc.stderr(), 10)
    r = run_cli(cluster, "status", "--node", root.url, "--json")
    assert [c["nodes"] for c in json.loads(r.stdout)] == [1]
