"""Helpers for the taskfs tests: a three-level tree of real node daemons, and the full CLI.

Named uniquely (not `conftest`) so `from taskfs_helpers import ...` is unambiguous. Reuses
the node tests' `Cluster` (real registry and node subprocesses).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "node"))

from node_helpers import GERYON, Cluster, Node, Proc, wait_until  # noqa: E402

from geryon.net.connection import NodeConnection  # noqa: E402
from registry.auth import load_secret  # noqa: E402

__all__ = ["GERYON", "Cluster", "Node", "Proc", "Tree", "wait_until"]


class Tree:
    """root -> (a, b), a -> g: every node offers `cpus` instance slots.

    `b` joins its parent by name (through the registry), the others by URL.
    """

    def __init__(self, cluster: Cluster, cpus: int = 1) -> None:
        self.c = cluster
        self.secret = load_secret(cluster.secret_file)
        cluster.start_registry()
        self.root = cluster.start_node("root", [], extra=["--cpus", str(cpus)])
        with cluster.client() as reg:          # a parent given by name must be registered first
            wait_until(lambda: reg.find({"svc": "rstyx", "host": "root"}), 10)
        self.a = cluster.start_node("a", [], extra=["--cpus", str(cpus), "--parent", self.root.url])
        self.b = cluster.start_node("b", [], extra=["--cpus", str(cpus), "--parent", "root"])
        self.g = cluster.start_node("g", [], extra=["--cpus", str(cpus), "--parent", self.a.url])
        self.nodes = {"root": self.root, "a": self.a, "b": self.b, "g": self.g}
        wait_until(lambda: self.node_count() == 4, 10)

    def get(self, node: Node, path: str) -> dict[str, Any]:
        """A signed GET on a node, as JSON."""
        with NodeConnection(node.url, self.secret) as conn:
            status, body = conn.request("GET", path)
        assert status == 200, body
        return json.loads(body)

    def node_count(self) -> int:
        return sum(c["nodes"] for c in self.get(self.root, "/v1/tree")["counts"])

    def usage(self) -> dict[str, tuple[int, int, list[int]]]:
        """Per live node: (sessions open, slots reserved, pids running)."""
        out = {}
        for name, node in self.nodes.items():
            if node.proc.popen.poll() is None:
                doc = self.get(node, "/v1/sessions")
                out[name] = (doc["sessions"], doc["reserved"], doc["pids"])
        return out

    def idle(self) -> bool:
        return all(v == (0, 0, []) for v in self.usage().values())

    def cli(self, *args: str, input: str = "", timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`geryon ARGS...` (the whole CLI) with this cluster's registry and secret."""
        return run_cli(self.c, *args, input=input, timeout=timeout, env=env)


def cli_env(cluster: Cluster) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    env.update({"GERYON_REGISTRY": cluster.registry_url, "GERYON_SECRET_FILE": str(cluster.secret_file),
                "XDG_CONFIG_HOME": str(cluster.tmp / "config")})
    return env


def run_cli(cluster: Cluster, *args: str, input: str = "", timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GERYON, *args], capture_output=True, text=True, timeout=timeout,
                          env={**cli_env(cluster), **(env or {})}, input=input)


def pid_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie not yet reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def timed(pred: Any, timeout: float) -> float:
    """Seconds until `pred()` holds (fails after `timeout`)."""
    started = time.monotonic()
    wait_until(pred, timeout)
    return time.monotonic() - started


def start_proc(cluster: Cluster, argv: Sequence[str], tag: str) -> Proc:
    """A subprocess owned by the cluster (stopped with it), with the cluster's environment."""
    p = Proc(argv, cluster.tmp / f"{tag}.{len(cluster.procs)}.err", env=cli_env(cluster))
    cluster.procs.append(p)
    return p
