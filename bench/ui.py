"""Benchmark: how fast the dashboard's pages answer with 100 job records and 50 nodes.

In one process: a real registry (`registry.server.RegistryServer`) holding 50 nodes' cpu
services and 100 chunk services, an ndb file naming 50 disks (master + replica), one
small aiohttp server answering every node's `GET /v1/cpu/load` and `GET /v1/sessions` (so
the dashboard's background reading does its real work), 100 job records written with
`geryon.mapreduce.jobstore.JobStore` (M maps + 10 reduces each, one failed attempt, events, stderr),
and the dashboard (`geryon.ui.server.Dashboard`) reading all of it. A logged-in client
then asks each page N times; the first ask is cold (nothing cached), the rest warm.
Usage: python bench/ui.py [--requests 30] [--maps 50] [--big-maps 2000]
Prints one JSON object: per page, the cold time and the warm median, p95 and max, ms.
Nothing here is imported by the package.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from geryon.mapreduce.jobstore import JobStore
from geryon.ui.server import Dashboard, DashboardConfig
from registry.auth import create_secret, load_secret
from registry.client import RegistryClient
from registry.server import RegistryServer, ServerConfig

NODES = 50
JOBS = 100


def write_jobs(root: str, maps: int, big: int) -> list[str]:
    store = JobStore(root, keep=JOBS + 1, flush_every=0.0)
    ids = []
    t0 = time.time() - 3600
    for j in range(JOBS):
        n_maps = big if j == 0 else maps
        job_id = f"bench-{j:03d}"
        rec = store.begin(job_id, {"name": "wc", "mode": "cluster", "disks": ["d0.t"], "partitions": 10,
                                   "maps": n_maps, "cpus": [f"n{i}" for i in range(NODES)], "started": t0 + j})
        for m in range(n_maps):
            cpu = f"n{m % NODES}"
            rec.attempt_started(f"m{m}", 0, cpu, f"d{m % 50}.t:f{m}.txt")
            if m == 3:
                rec.stderr("m3", 0, b"Traceback (most recent call last):\n  boom\n" * 20)
                rec.attempt_ended("m3", 0, "failed", error="worker exit status 3")
                rec.attempt_started("m3", 1, f"n{(m + 1) % NODES}")
                rec.attempt_ended("m3", 1, "done", bytes_in=1 << 20, records_in=100)
                rec.event("m3.a0 on n3 failed (system): worker exit status 3; retrying elsewhere")
            else:
                rec.attempt_ended(f"m{m}", 0, "done", bytes_in=1 << 20, records_in=100, records_out=1000)
        for r in range(10):
            rec.attempt_started(f"r{r}", 0, f"n{r}")
            rec.attempt_ended(f"r{r}", 0, "done", bytes_in=(r + 1) << 16)
        rec.finish("succeeded", {"output": f"/out/{job_id}", "counters": {"g": {"c": 1}}})
        rec.close()
        ids.append(job_id)
    return ids


async def node_stub() -> tuple[web.AppRunner, int]:
    async def load(request: web.Request) -> web.Response:
        return web.json_response({"node": "n", "os": "Linux", "arch": "x86_64", "ncpu": 8, "load": 1.5, "virtual": 0.0,
                                  "generation": 1, "running": 2, "mem_free": 8 << 30, "mem_total": 16 << 30})

    async def sessions(request: web.Request) -> web.Response:
        return web.json_response({"sessions": 1, "reserved": 2, "free": 6, "ncpu": 8, "pids": []})

    app = web.Application()
    app.add_routes([web.get("/v1/cpu/load", load), web.get("/v1/sessions", sessions)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="geryon-bench-ui-"))
    create_secret(tmp / "secret")
    secret = load_secret(tmp / "secret")
    ndb_lines = []
    for d in range(NODES):
        ndb_lines.append(f"name=d{d}.t kfs master=n{d}!in{d} replica=d{d}.t.r\n")
        ndb_lines.append(f"name=d{d}.t.r kfs master=n{(d + 1) % NODES}!rep{d}\n")
    (tmp / "cluster.ndb").write_text("".join(ndb_lines))
    ids = await asyncio.get_running_loop().run_in_executor(None, write_jobs, str(tmp / "jobs"), args.maps,
                                                           args.big_maps)
    stub, stub_port = await node_stub()
    reg = RegistryServer(ServerConfig(host="127.0.0.1", port=0, secret=secret, mdns=False,
                                      ndb_path=tmp / "cluster.ndb"))
    await reg.start()
    loop = asyncio.get_running_loop()
    client = await loop.run_in_executor(None, lambda: RegistryClient(reg.url, secret=secret, owner="bench"))
    out: dict[str, Any] = {"nodes": NODES, "jobs": JOBS, "maps_per_job": args.maps, "big_job_maps": args.big_maps,
                           "requests": args.requests, "ms": {}}
    try:
        for i in range(NODES):
            url = f"http://127.0.0.1:{stub_port}"
            attrs = {"svc": "rstyx", "host": f"n{i}", "url": url, "os": "Linux", "arch": "x86_64", "ncpu": "8",
                     "load": "1.5", "memfree": str(8 << 30), "memtotal": str(16 << 30), "running": "2"}
            await loop.run_in_executor(None, client.register, f"tcp!h{i}!7070", attrs)
            for chunk in (f"in{i}", f"rep{(i - 1) % NODES}"):
                await loop.run_in_executor(None, client.register, f"tcp!h{i}!7070!{chunk}",
                                           {"resource": "kfs", "id": chunk, "name": f"n{i}", "capacity": str(64 << 20),
                                            "free": str(32 << 20)})
        dash = Dashboard(DashboardConfig(secret=secret, jobs_dir=str(tmp / "jobs"), port=0, check_every=0), client)
        await dash.start()
        try:
            assert dash.watch is not None
            deadline = time.monotonic() + 60
            while len(dash.watch.snapshot.nodes) < NODES or len(dash.watch.snapshot.disks) < NODES:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard saw {len(dash.watch.snapshot.nodes)} nodes")
                await asyncio.sleep(0.2)
            out["nodes_seen"] = len(dash.watch.snapshot.nodes)
            out["disks_seen"] = len(dash.watch.snapshot.disks)
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.get(dash.login_url(), allow_redirects=False) as resp:
                    assert resp.status == 303, resp.status
                pages = {"/cluster": "/cluster", "/jobs": "/jobs", "/jobs/ID (60 attempts)": f"/jobs/{ids[1]}",
                         f"/jobs/ID ({args.big_maps + 11} attempts)": f"/jobs/{ids[0]}"}
                for label, path in pages.items():
                    times = []
                    size = 0
                    for _ in range(args.requests):
                        t = time.perf_counter()
                        async with http.get(dash.url + path) as resp:
                            body = await resp.read()
                            assert resp.status == 200, (path, resp.status)
                        times.append((time.perf_counter() - t) * 1000)
                        size = len(body)
                    warm = sorted(times[1:])
                    out["ms"][label] = {"cold": round(times[0], 1), "median": round(statistics.median(warm), 1),
                                        "p95": round(warm[int(0.95 * (len(warm) - 1))], 1), "max": round(warm[-1], 1),
                                        "bytes": size}
        finally:
            await dash.close()
    finally:
        await loop.run_in_executor(None, client.close)
        await reg.close()
        await stub.cleanup()
    out["cpu_count"] = os.cpu_count()
    out["loadavg"] = [round(x, 1) for x in os.getloadavg()]
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=30)
    p.add_argument("--maps", type=int, default=50)
    p.add_argument("--big-maps", type=int, default=2000)
    print(json.dumps(asyncio.run(main(p.parse_args())), indent=1))
