"""Benchmark: `find` requests per second against a real registry holding 1,000 services.

Starts `geryon registry serve` as a subprocess on loopback (signed requests, as in
production), registers N services from one client session, then measures:
  - sequential: one synchronous `RegistryClient.find` after another (latency-bound);
  - concurrent: C asyncio workers sending signed POST /v1/find (throughput-bound).
Usage: python bench/registry_find.py [--services 1000] [--seconds 5] [--concurrency 16]
Prints one JSON object. Nothing here is imported by the package.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from registry.auth import create_secret
from registry.signer import Signer
from registry.client import RegistryClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def concurrent_finds(url: str, secret: bytes, body: bytes, seconds: float, workers: int) -> int:
    done = 0
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            async with await Signer(secret).send(session, "POST", url, "/v1/find", body) as resp:
                assert resp.status == 200, resp.status
                await resp.read()
            done += 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(workers)))
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="geryon-bench-"))
    secret = create_secret(tmp / "secret")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "from geryon.cli import main; main()",
                               "registry", "serve", "--listen", f"127.0.0.1:{port}",
                               "--secret-file", str(tmp / "secret"), "--no-mdns"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None and "listening" in server.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        results: dict[str, object] = {"services": args.services}
        with RegistryClient(url, secret=secret, owner="bench") as client:
            t = time.monotonic()
            for i in range(args.services):
                client.register(f"tcp!host{i % 50}!{7000 + i}",
                                {"name": f"host{i % 50}", "id": f"chunk{i}", "kind": "disk"})
            results["register_per_s"] = round(args.services / (time.monotonic() - t))
            for label, query in (("one_match", {"id": "chunk500"}), ("all_match", {"kind": "*"})):
                n, t = 0, time.monotonic()
                while time.monotonic() - t < args.seconds:
                    client.find(query)
                    n += 1
                results[f"sequential_{label}_per_s"] = round(n / (time.monotonic() - t))
                body = json.dumps({"query": [list(p) for p in query.items()]}).encode()
                t = time.monotonic()
                n = asyncio.run(concurrent_finds(url, secret, body, args.seconds, args.concurrency))
                results[f"concurrent{args.concurrency}_{label}_per_s"] = round(n / (time.monotonic() - t))
        print(json.dumps(results, indent=1))
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
