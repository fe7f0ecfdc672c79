"""dsh's virtual load is the node's, shared by every client (issue 18, part 2).

Unit tests of the decay and the compare-and-claim (pure, the clock injected), then real
registries and node daemons: six `geryon dsh` processes released at once by a barrier
spread over three equal idle nodes, and follow the ndb weights when one is favoured.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from geryon.cluster.dsh import choose, with_load
from geryon.cluster.pick import CpuInfo, LeastLoaded, NoCpu, Weight
from geryon.node.virtualload import VirtualLoad
from node_helpers import VERB_CLI, Cluster, wait_until
from registry.signer import Signer

N, K = 6, 3
"""Concurrent dsh processes, and nodes."""

LONG = "600"
"""--virtual-seconds for the cluster tests: what a dispatch adds stays for the whole test,
however slow this machine is (the decay itself is tested below with an injected clock)."""


# -- the decay and the claim: pure ---------------------------------------------------------
def test_virtual_load_rises_by_one_per_dispatch_and_decays_linearly() -> None:
    v = VirtualLoad(per_dispatch=1.0, seconds=5.0)
    assert (v.value(100.0), v.generation) == (0.0, 0)
    v = v.counted(100.0)
    assert (v.value(100.0), v.generation) == (1.0, 1)
    assert v.value(102.5) == pytest.approx(0.5)
    v = v.counted(102.5)                                   # 0.5 left of the first, 1.0 of the second
    assert v.value(102.5) == pytest.approx(1.5)
    assert v.value(105.0) == pytest.approx(0.5)            # the first is gone, the second half way
    assert v.value(107.5) == 0.0
    v = v.counted(110.0)
    assert (v.stamps, v.generation) == ((110.0,), 3)       # decayed dispatches are forgotten
    assert VirtualLoad(seconds=0).counted(1.0).value(1.0) == 0.0


def test_claim_succeeds_only_at_the_generation_read() -> None:
    v = VirtualLoad(seconds=5.0).counted(0.0)
    read = v.generation
    v, won = v.claim(read, 1.0)
    assert won and v.generation == read + 1 and v.value(1.0) == pytest.approx(1.8)
    same, lost = v.claim(read, 1.0)                        # a second client read the same generation
    assert not lost and same is v


class FakeNodes:
    """Nodes as `VirtualLoad` values, read and claimed as the routes do (no sockets)."""

    def __init__(self, names: list[str], seconds: float = 600.0, mem_used: dict[str, float] | None = None) -> None:
        self.state = {n: VirtualLoad(seconds=seconds) for n in names}
        self.mem_used = mem_used or {}
        self.unreachable: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.lost = 0

    def read(self, name: str, now: float) -> CpuInfo:
        v = self.state[name]
        return with_load(CpuInfo(name=f"tcp!{name}!1", host=name, url=f"http://{name}:1"),
                         {"ncpu": 1, "load": 0.0, "virtual": v.value(now), "generation": v.generation,
                          "mem_free": round(100 * (1 - self.mem_used.get(name, 0.0))), "mem_total": 100})

    def snapshot(self, now: float) -> list[CpuInfo]:
        return [self.read(n, now) for n in self.state]

    def claimer(self, now: float):
        async def claim(cpu: CpuInfo) -> tuple[bool, CpuInfo, str | None] | None:
            await asyncio.sleep(0)                         # let the other clients interleave
            if cpu.host in self.unreachable:
                return None
            self.state[cpu.host], won = self.state[cpu.host].claim(cpu.generation, now)
            self.counts[cpu.host] += won
            self.lost += not won
            return won, self.read(cpu.host, now), "token" if won else None
        return claim


def clients_at_once(nodes: FakeNodes, pick: LeastLoaded, n: int = N) -> list[tuple[CpuInfo, str | None]]:
    """`n` clients that all read the nodes at the same instant, then claim, interleaved."""
    snapshot = nodes.snapshot(0.0)

    async def go() -> list[tuple[CpuInfo, str | None]]:
        return list(await asyncio.gather(*(choose(snapshot, pick, nodes.claimer(0.0), 0.0) for _ in range(n))))
    return asyncio.run(go())


def test_clients_choosing_from_one_snapshot_spread_because_claims_compare() -> None:
    nodes = FakeNodes(["n1", "n2", "n3"])
    chosen = clients_at_once(nodes, LeastLoaded(penalty=0.0))
    assert all(token == "token" for _, token in chosen)
    assert Counter(c.host for c, _ in chosen) == nodes.counts == {"n1": 2, "n2": 2, "n3": 2}
    assert nodes.lost > 0                                  # they did collide, and chose again
    # without the compare, every client takes what its snapshot called idle
    idle = FakeNodes(["n1", "n2", "n3"]).snapshot(0.0)
    assert Counter(LeastLoaded(penalty=0.0).pick(idle, 0.0).host for _ in range(N)) == {"n1": N}


def test_weights_bias_the_claimed_spread() -> None:
    nodes = FakeNodes(["n1", "n2", "n3"])
    clients_at_once(nodes, LeastLoaded({"n3": Weight(load=0.25)}, penalty=0.0))
    assert nodes.counts == {"n1": 1, "n2": 1, "n3": 4}     # n3's dispatches score 0, .25, .5, .75 < 1
    # mem=2 on a node whose memory is 90% used: its dispatches score 1.8, 2.8; the others' 0, 1, 2
    nodes = FakeNodes(["n1", "n2", "n3"], mem_used={"n1": 0.9})
    clients_at_once(nodes, LeastLoaded({"n1": Weight(load=1.0, mem=2.0)}, penalty=0.0))
    assert nodes.counts == {"n1": 1, "n2": 3, "n3": 2} or nodes.counts == {"n1": 1, "n2": 2, "n3": 3}


def test_choose_passes_over_unreachable_nodes_and_gives_up_claiming_after_tries() -> None:
    nodes = FakeNodes(["n1", "n2"])
    nodes.unreachable.add("n1")
    cpu, token = asyncio.run(choose(nodes.snapshot(0.0), LeastLoaded(penalty=0.0), nodes.claimer(0.0), 0.0))
    assert (cpu.host, token) == ("n2", "token")
    nodes.unreachable.add("n2")
    with pytest.raises(NoCpu):
        asyncio.run(choose(nodes.snapshot(0.0), LeastLoaded(penalty=0.0), nodes.claimer(0.0), 0.0))

    async def always_lost(cpu: CpuInfo) -> tuple[bool, CpuInfo, str | None]:
        return False, cpu, None
    tried = FakeNodes(["n1"]).snapshot(0.0)
    assert asyncio.run(choose(tried, LeastLoaded(penalty=0.0), always_lost, 0.0, tries=3)) == (tried[0], None)
    from_registry = [CpuInfo(name="tcp!old!1", host="old", url="http://old:1")]   # generation -1
    assert asyncio.run(choose(from_registry, LeastLoaded(penalty=0.0), always_lost, 0.0)) == (from_registry[0], None)


def test_bad_load_reports_are_refused() -> None:
    cpu = CpuInfo(name="tcp!a!1", host="a", url="http://a:1")
    good = {"ncpu": 2, "load": 0.5, "virtual": 1.0, "generation": 3, "mem_free": 1, "mem_total": 2}
    assert with_load(cpu, good).load == 1.5 and with_load(cpu, good).virtual == 1.0
    for bad in (None, [], {**good, "load": "0.5"}, {**good, "generation": True}, {"ncpu": 1}):
        with pytest.raises(ValueError):
            with_load(cpu, bad)


# -- the routes, spoken to directly ---------------------------------------------------------
async def _ask(url: str, secret: bytes | None, method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        signer = Signer(secret)
        async with await signer.send(http, method, url, path, body,
                                     headers={"Content-Type": "application/json"} if body else None) as resp:
            return resp.status, await resp.json(content_type=None)


async def _run(url: str, secret: bytes, spec: dict) -> list:
    async with aiohttp.ClientSession() as http:
        async with await Signer(secret).connect(http, url, "/v1/cpu/run") as ws:
            await ws.send_str(json.dumps(spec))
            return [json.loads(m.data) if m.type == aiohttp.WSMsgType.TEXT else m.data async for m in ws]


def test_load_and_claim_routes(cluster: Cluster, secret: bytes) -> None:
    node = cluster.start_node("n1", [], register=False, extra=["--cpus", "2", "--fake-load", "0.25",
                                                                "--virtual-seconds", LONG])
    status, load = asyncio.run(_ask(node.url, secret, "GET", "/v1/cpu/load"))
    assert status == 200 and (load["node"], load["ncpu"], load["load"], load["virtual"], load["generation"]) == \
        ("n1", 2, 0.25, 0.0, 0)
    claim = json.dumps({"expect": 0}).encode()
    status, won = asyncio.run(_ask(node.url, secret, "POST", "/v1/cpu/claim", claim))
    assert status == 200 and won["claimed"] and won["generation"] == 1 and 0.99 < won["virtual"] <= 1.0
    status, lost = asyncio.run(_ask(node.url, secret, "POST", "/v1/cpu/claim", claim))   # stale: 409, the news
    assert status == 409 and not lost["claimed"] and lost["generation"] == 1 and "claim" not in lost
    # the run carrying the claim's token is not counted again; a run without one is
    frames = asyncio.run(_run(node.url, secret, {"cmd": "true", "claim": won["claim"]}))
    assert frames[-1] == {"op": "exit", "status": 0}
    assert asyncio.run(_ask(node.url, secret, "GET", "/v1/cpu/load"))[1]["generation"] == 1
    asyncio.run(_run(node.url, secret, {"cmd": "true", "claim": won["claim"]}))         # a token is used once
    asyncio.run(_run(node.url, secret, {"cmd": "true"}))
    after = asyncio.run(_ask(node.url, secret, "GET", "/v1/cpu/load"))[1]
    assert after["generation"] == 3 and 2.9 < after["virtual"] <= 3.0


def test_claim_refuses_bad_bodies_and_unsigned_requests(cluster: Cluster, secret: bytes) -> None:
    node = cluster.start_node("n1", [], register=False)
    for body in (b"not json", b"[1]", b'{"expect": "0"}', b'{"expect": true}', b'{"expect": 1.0}', b"{}"):
        status, doc = asyncio.run(_ask(node.url, secret, "POST", "/v1/cpu/claim", body))
        assert (status, doc["error"]) == (400, 'claim body must be {"expect": GENERATION}'), body
    status, doc = asyncio.run(_ask(node.url, secret, "POST", "/v1/cpu/claim", b'{"expect": 0}' + b" " * 4096))
    assert status == 413
    for method, path in (("GET", "/v1/cpu/load"), ("POST", "/v1/cpu/claim")):
        assert asyncio.run(_ask(node.url, None, method, path, b'{"expect": 0}' if method == "POST" else b""))[0] == 401
    assert asyncio.run(_ask(node.url, secret, "GET", "/v1/cpu/load"))[1]["generation"] == 0


def test_virtual_seconds_option_is_checked() -> None:
    from geryon.cli.node import node
    result = CliRunner().invoke(node, ["--virtual-seconds", "-1", "--standalone"])
    assert result.exit_code == 2 and "--virtual-seconds" in result.output


# -- N concurrent dsh processes on K real nodes -------------------------------------------
BARRIER = (
    "import os, sys, time, click\n"
    "from geryon.cli.node import commands\n"
    "import geryon.cluster.dsh\n"
    "ready, go = sys.argv[1:3]\n"
    "open(ready, 'w').close()\n"
    "while not os.path.exists(go):\n"
    "    time.sleep(0.005)\n"
    "click.Group('geryon', commands={c.name: c for c in commands})(sys.argv[3:])\n")
"""A dsh process that signals it is ready, then waits on a file before dispatching."""


def start(cluster: Cluster, weights: str = "") -> None:
    cluster.name_disks(weights)
    cluster.start_registry()
    for i in range(1, K + 1):
        cluster.start_node(f"n{i}", [], extra=["--cpus", "1", "--fake-load", "0", "--virtual-seconds", LONG])
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"svc": "rstyx"})) == K, 30)


def dsh_at_once(cluster: Cluster, tmp: Path) -> Counter[str]:
    """Start N `geryon dsh` processes, release them together, and count where each ran."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    env.update({"GERYON_REGISTRY": cluster.registry_url, "GERYON_SECRET_FILE": str(cluster.secret_file),
                "GERYON_NDB": str(cluster.ndb), "XDG_STATE_HOME": str(tmp / "state")})
    go = tmp / "go"
    procs = []
    try:
        for i in range(N):
            procs.append(subprocess.Popen(
                [sys.executable, "-c", BARRIER, str(tmp / f"ready{i}"), str(go),
                 "dsh", "--", "sh", "-c", "echo $GERYON_NODE; sleep 1"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        wait_until(lambda: all((tmp / f"ready{i}").exists() for i in range(N)), 120)
        go.touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert all(f"ran on {out.strip()}" in err for out, err in outs), outs
    return Counter(out.strip() for out, _ in outs)


def test_concurrent_dsh_processes_spread_over_equal_idle_nodes(cluster: Cluster, tmp_path: Path) -> None:
    start(cluster)
    counts = dsh_at_once(cluster, tmp_path)
    assert sum(counts.values()) == N and set(counts) <= {"n1", "n2", "n3"}
    assert all(abs(counts[f"n{i}"] - N / K) <= 1 for i in range(1, K + 1)), counts
    # every client sees the virtual load: the node's own report, and `geryon loads`
    rows = {line.split()[0]: line.split() for line in cluster.cli("loads").stdout.splitlines()[1:]}
    assert {h: round(float(r[4])) for h, r in rows.items()} == {f"n{i}": counts[f"n{i}"] for i in range(1, K + 1)}
    assert all(r[3] == "0.00" for r in rows.values())
    with cluster.client() as reg:                    # and the registry, for whoever reads it there
        wait_until(lambda: {s.get("host"): round(float(s.get("virtual") or 0)) for s in reg.find({"svc": "rstyx"})}
                   == {f"n{i}": counts[f"n{i}"] for i in range(1, K + 1)}, 30)


def test_concurrent_dsh_processes_follow_the_weights(cluster: Cluster, tmp_path: Path) -> None:
    start(cluster, "node=n3 load=0.25\n")           # n3's load counts a quarter (dsh reads GERYON_NDB)
    counts = dsh_at_once(cluster, tmp_path)
    # Each won claim is on a node whose score was, at that moment, the lowest (a claim at a
    # stale generation loses and is chosen again), so the six dispatches take the six lowest
    # scores on offer: n1 at 0, n2 at 0, n3 at 0, .25, .5 and .75 (then 1.0 for each).
    assert counts == {"n1": 1, "n2": 1, "n3": 4}
