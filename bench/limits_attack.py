"""Benchmark: legitimate requests/s on a node and a registry while clients without the secret attack.

Starts `geryon registry serve` and `geryon node` as subprocesses on loopback, each under
`prlimit --nofile=1024` (what systemd gives a unit without LimitNOFILE), then for each
phase measures signed `GET /v1/node` on the node (one `NodeConnection`, sequential) and
`find` on the registry (one `RegistryClient`, sequential) for S seconds, counting
failures, and the bytes each server's log grew:
  - quiet: nothing else;
  - half-open: 1,100 connections per server from 100 loopback addresses, each holding
    half a request line, re-opened as the server closes them;
  - aborted: a loop of connections sending a signed request head with Content-Length 100,
    10 bytes of body, then closing (and the same unsigned).
Usage: python bench/limits_attack.py [--seconds 10] [--half-open 1100]
Prints one JSON object. Nothing here is imported by the package.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from geryon.disks.chunk import create_chunk
from geryon.net.connection import NodeConnection
from registry.auth import create_secret
from registry.client import RegistryClient
from registry.errors import RegistryError
from registry.signer import Signer

GERYON = [sys.executable, "-c", "from geryon.cli import main; main()"]
PRLIMIT = ["prlimit", "--nofile=1024:1024"]


def start(argv: list[str], err: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*PRLIMIT, *argv], stdout=subprocess.PIPE, stderr=err.open("w"), text=True)
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(30):
            raise SystemExit(f"{argv[3:5]} did not start: {err.read_text()}")
    line = proc.stdout.readline()
    return proc, line.split("listening on", 1)[1].split()[0]


class HalfOpen(threading.Thread):
    """Keeps `n` half-open connections to `port`, re-opening those the server closes."""

    def __init__(self, port: int, n: int) -> None:
        super().__init__(daemon=True)
        self.port, self.n = port, n
        self.stop = threading.Event()
        self.opened = 0

    def _open(self, i: int) -> socket.socket | None:
        s = socket.socket()
        try:
            s.bind((f"127.0.9.{1 + i % 100}", 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", self.port))
            s.sendall(b"GET /v1/node HTTP/1.1\r\nHost: x")
            s.setblocking(False)
            self.opened += 1
            return s
        except OSError:
            s.close()
            return None

    def run(self) -> None:
        socks: list[socket.socket | None] = [self._open(i) for i in range(self.n)]
        while not self.stop.wait(0.2):
            for i, s in enumerate(socks):
                try:
                    alive = s is not None and s.recv(1) != b""
                except BlockingIOError:
                    alive = True
                except OSError:
                    alive = False
                if not alive:
                    if s is not None:
                        s.close()
                    socks[i] = self._open(i)
        for s in socks:
            if s is not None:
                s.close()


class Aborted(threading.Thread):
    """Sends aborted bodies (signed and unsigned) to `url` in a loop."""

    def __init__(self, url: str, target: str, secret: bytes) -> None:
        super().__init__(daemon=True)
        self.url, self.target, self.secret = url, target, secret
        self.port = int(url.rsplit(":", 1)[1])
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        signer = Signer(self.secret)
        body = b'{"query": []}'.ljust(100)
        while not self.stop.is_set():
            head = signer.headers_sync(self.url, "POST", self.target, body)
            signed = (f"POST {self.target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
                      + "Content-Length: 100\r\n\r\n").encode() + body[:10]
            unsigned = (f"POST {self.target} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n").encode() + body[:10]
            for data in (signed, unsigned):
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                        s.sendall(data)
                    self.sent += 1
                except OSError:
                    pass


def measure(node: NodeConnection, reg: RegistryClient, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, call in (("node", lambda: node.request("GET", "/v1/node")[0] == 200),
                       ("registry", lambda: bool(reg.find({"svc": "bench"})))):
        ok = failed = 0
        worst = 0.0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t = time.monotonic()
            try:
                ok += call()
            except (OSError, RegistryError) as exc:
                failed += 1
                print(f"{name}: {exc}", file=sys.stderr)
            worst = max(worst, time.monotonic() - t)
        out[name] = {"per_s": round(ok / seconds, 1), "failed": failed, "worst_ms": round(worst * 1000, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--half-open", type=int, default=1100)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
    tmp = Path(tempfile.mkdtemp(prefix="geryon-bench-"))
    secret = create_secret(tmp / "secret")
    reg_proc, reg_url = start([*GERYON, "registry", "serve", "--listen", "127.0.0.1:0", "--no-mdns",
                               "--secret-file", str(tmp / "secret")], tmp / "registry.err")
    create_chunk(str(tmp / "c0"), 64 << 20)
    node_proc, node_url = start([*GERYON, "node", "--name", "n0", "--listen", "127.0.0.1:0", "--standalone",
                                 "--secret-file", str(tmp / "secret"), "--disk", f"c0={tmp / 'c0'}",
                                 "--work-dir", str(tmp / "work")], tmp / "node.err")
    logs = {"node": tmp / "node.err", "registry": tmp / "registry.err"}
    result: dict[str, Any] = {"seconds": args.seconds, "half_open": args.half_open}
    try:
        with NodeConnection(node_url, secret) as node, RegistryClient(reg_url, secret=secret, owner="b") as reg:
            reg.register("tcp!bench!1", {"svc": "bench"})
            for phase in ("quiet", "half-open", "aborted"):
                size = {k: p.stat().st_size for k, p in logs.items()}
                attackers: list[Any] = []
                if phase == "half-open":
                    attackers = [HalfOpen(int(u.rsplit(":", 1)[1]), args.half_open) for u in (node_url, reg_url)]
                elif phase == "aborted":
                    attackers = [Aborted(node_url, "/v1/chunks/c0/op", secret), Aborted(reg_url, "/v1/find", secret)]
                for a in attackers:
                    a.start()
                time.sleep(2 if attackers else 0)           # let the attack build up
                result[phase] = measure(node, reg, args.seconds)
                result[phase]["server_fds"] = {k: len(os.listdir(f"/proc/{p.pid}/fd"))
                                               for k, p in (("node", node_proc), ("registry", reg_proc))}
                for a in attackers:
                    a.stop.set()
                    a.join()
                result[phase]["attack"] = sum(getattr(a, "opened", 0) or getattr(a, "sent", 0) for a in attackers)
                result[phase]["log_bytes"] = {k: p.stat().st_size - size[k] for k, p in logs.items()}
    finally:
        for p in (node_proc, reg_proc):
            p.terminate()
            p.wait(15)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
