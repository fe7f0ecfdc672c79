"""Helpers for the node tests: real registry and node daemon subprocesses we own.

Named uniquely (not `conftest`) so `from node_helpers import ...` is unambiguous.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from geryon.disks.chunk import create_chunk

GERYON = [sys.executable, "-c", "from geryon.cli import main; main()"]
NODE_CLI = [sys.executable, "-c", "from geryon.cli.node import node; node()"]
VERB_CLI = [sys.executable, "-c",
            "import sys, click; from geryon.cli.node import commands\n"
            "g = click.Group('geryon', commands={c.name: c for c in commands}); g()"]


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.02) -> Any:
    """Poll `pred` until it returns something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Proc:
    """A subprocess we own; stderr goes to a file (an unread pipe would block it)."""

    def __init__(self, argv: Sequence[str], err_path: Path, env: dict[str, str] | None = None,
                 prefix: Sequence[str] = ()) -> None:
        self.err_path = err_path
        self.expected_exit = False
        self._err = open(err_path, "w")  # noqa: SIM115 - closed in stop()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
        full_env.update(env or {})
        self.popen = subprocess.Popen([*prefix, *argv], stdout=subprocess.PIPE, stderr=self._err,
                                      text=True, env=full_env)

    def stderr(self) -> str:
        return self.err_path.read_text()

    def readline(self, timeout: float = 15) -> str:
        assert self.popen.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.popen.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise TimeoutError(f"no output from subprocess; stderr:\n{self.stderr()}")
        return self.popen.stdout.readline()

    def send(self, sig: int) -> None:
        self.expected_exit = True
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
                self.popen.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.popen.kill()
        self.popen.wait(10)
        if self.popen.stdout:
            self.popen.stdout.close()
        self._err.close()


class Node:
    """A node daemon subprocess and what it serves."""

    def __init__(self, name: str, proc: Proc, url: str, chunks: dict[str, Path]) -> None:
        self.name, self.proc, self.url, self.chunks = name, proc, url, chunks

    def chunk_url(self, chunk: str) -> str:
        return f"geryon://{self.url.split('://', 1)[1]}/{chunk}"

    def kill(self) -> None:
        self.proc.expected_exit = True
        self.proc.stop(signal.SIGKILL)


class Cluster:
    """A registry and node daemons on loopback (or in network namespaces), sharing one secret."""

    def __init__(self, tmp_path: Path, secret_file: Path) -> None:
        self.tmp = tmp_path
        self.secret_file = secret_file
        self.ndb = tmp_path / "cluster.ndb"
        self.ndb.write_text("")
        self.procs: list[Proc] = []
        self.registry_url = ""
        self.nodes: dict[str, Node] = {}

    def _proc(self, argv: Sequence[str], tag: str, prefix: Sequence[str] = ()) -> Proc:
        p = Proc(argv, self.tmp / f"{tag}.{len(self.procs)}.err", prefix=prefix,
                 env={"XDG_CONFIG_HOME": str(self.tmp / "config")})
        self.procs.append(p)
        return p

    def start_registry(self, host: str = "127.0.0.1", prefix: Sequence[str] = (), port: int = 0,
                       mdns_interface: str | None = None, extra: Sequence[str] = ()) -> Proc:
        """The registry; silent on zeroconf unless `mdns_interface` names where to advertise."""
        mdns = ["--mdns-interface", mdns_interface] if mdns_interface else ["--no-mdns"]
        p = self._proc([*GERYON, "registry", "serve", "--listen", f"{host}:{port}", *mdns,
                        "--secret-file", str(self.secret_file), "--ndb", str(self.ndb),
                        "--heartbeat", "0.2", "--dead-after", "1", *extra], "registry", prefix)
        line = p.readline()
        assert "listening on" in line, line + p.stderr()
        self.registry_url = line.split("listening on", 1)[1].split()[0]
        return p

    def name_disks(self, text: str) -> None:
        """Write the ndb file the registry watches (it re-reads it within 0.5 s)."""
        self.ndb.write_text(text)

    def start_node(self, name: str, chunks: Sequence[str] = ("c0",), *, capacity: int = 64 << 20,
                   extra: Sequence[str] = (), host: str = "127.0.0.1", prefix: Sequence[str] = (),
                   register: bool = True) -> Node:
        paths: dict[str, Path] = {}
        args = ["--name", name, "--listen", f"{host}:0", "--secret-file", str(self.secret_file),
                "--work-dir", str(self.tmp / f"work-{name}"), "--refresh", "0.2"]
        for chunk in chunks:
            path = self.tmp / f"{name}-{chunk}"
            if not path.exists():
                create_chunk(str(path), capacity)
            paths[chunk] = path
            args += ["--disk", f"{chunk}={path}"]
        args += ["--registry", self.registry_url] if register else ["--standalone"]
        p = self._proc([*NODE_CLI, *args, *extra], f"node-{name}", prefix)
        line = p.readline()
        assert "listening on" in line, line + p.stderr()
        node = Node(name, p, line.split("listening on", 1)[1].split()[0], paths)
        self.nodes[name] = node
        return node

    def client(self) -> Any:
        from registry.auth import load_secret
        from registry.client import RegistryClient
        return RegistryClient(self.registry_url, secret=load_secret(self.secret_file), owner="test")

    def cli(self, *args: str, timeout: float = 30, prefix: Sequence[str] = (),
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `geryon VERB ...` (this package's verbs) against the cluster."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
        env.update({"GERYON_REGISTRY": self.registry_url, "GERYON_SECRET_FILE": str(self.secret_file),
                    "GERYON_NDB": str(self.ndb), "XDG_STATE_HOME": str(self.tmp / "state")})
        return subprocess.run([*prefix, *VERB_CLI, *args], capture_output=True, text=True,
                              timeout=timeout, env=env, input=input)

    def geryon(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the whole `geryon` command against the cluster (its registry, secret and ndb file)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
        env.update({"GERYON_REGISTRY": self.registry_url, "GERYON_SECRET_FILE": str(self.secret_file),
                    "GERYON_NDB": str(self.ndb), "XDG_CONFIG_HOME": str(self.tmp / "config")})
        return subprocess.run([*GERYON, *args], capture_output=True, text=True, timeout=timeout, env=env)

    def stop(self) -> None:
        """Stop everything; fail if a daemon died that no test meant to stop."""
        died = [p for p in self.procs if p.popen.poll() is not None and not p.expected_exit]
        for p in reversed(self.procs):
            p.stop(signal.SIGTERM)
        if died:
            raise AssertionError("daemons died unexpectedly:\n" +
                                 "\n".join(f"{p.err_path}: {p.stderr()[-2000:]}" for p in died))
