"""Sessions on a real tree (root -> a, b; a -> g; one cpu each): exec, status, release.

Every test leaves no session, reservation or process on any node (the `tree` fixture checks).
"""
from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import aiohttp
import pytest

import geryon
from geryon.taskfs.client import SessionError, State
from registry.signer import Signer
from taskfs_helpers import Cluster, Tree, pid_gone, run_cli, start_proc, timed, wait_until

LIVENESS = 5.0
"""DESIGN's liveness limit: heartbeat 1 s, dead after 5 s."""

LINES = "".join(f"line {i}\n" for i in range(10))


def test_exec_four_on_the_tree_gives_four_outputs_and_statuses(tree: Tree) -> None:
    r = tree.cli("exec", "--node", tree.root.url, "-n", "4", "--", "hostname")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 4 and len(set(r.stdout.splitlines())) == 1
    r = tree.cli("exec", "--node", tree.root.url, "-n", "4", "--tag", "--", "echo $GERYON_NODE")
    assert sorted(r.stdout.splitlines()) == ["[0 root] root", "[1 a] a", "[2 g] g", "[3 b] b"]
    with geryon.session(node=tree.root.url, secret=tree.secret) as s:
        s.reserve(4)
        s.exec("exit $GERYON_INSTANCE")
        assert s.wait(30) == [0, 1, 2, 3]
    r = tree.cli("exec", "--node", tree.root.url, "-n", "4", "--", "exit $GERYON_INSTANCE")
    assert r.returncode == 3                                          # the worst instance's status


def test_a_reservation_that_cannot_be_met_fails_and_leaves_nothing(tree: Tree) -> None:
    r = tree.cli("exec", "--node", tree.root.url, "-n", "5", "--", "hostname")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "geryon: no resources matching request: 5 instances wanted, 4 free\n"
    assert tree.idle()
    r = tree.cli("exec", "--node", tree.root.url, "-n", "1", "--os", "Plan9", "--", "hostname")
    assert r.returncode == 1 and "no resources matching request" in r.stderr


def test_a_partial_reservation_is_rolled_back_everywhere(tree: Tree) -> None:
    # g's only slot is taken: whether the root already knows (it plans short) or learns it
    # from a (which refuses), nothing the failed request took may stay reserved.
    with geryon.session(node=tree.g.url, secret=tree.secret) as held:
        held.reserve(1)
        with geryon.session(node=tree.root.url, secret=tree.secret) as s:
            with pytest.raises(geryon.GeryonError, match="^no resources matching request"):
                s.reserve(4)
            wait_until(lambda: {k: v[:2] for k, v in tree.usage().items()} ==
                       {"root": (1, 0), "a": (0, 0), "b": (0, 0), "g": (1, 1)}, 5)
        # The client as the root over the registry's cpus: every node says yes but g.
        r = tree.cli("exec", "-n", "4", "--", "hostname")
        assert r.returncode == 1
        assert r.stderr == "geryon: no resources matching request: 1 instance wanted, 0 free (on g)\n"
        wait_until(lambda: {k: v[:2] for k, v in tree.usage().items()} ==
                   {"root": (0, 0), "a": (0, 0), "b": (0, 0), "g": (1, 1)}, 5)


def test_input_is_broadcast_or_scattered(tree: Tree) -> None:
    r = tree.cli("exec", "--node", tree.root.url, "-n", "3", "--", "wc", "-l", input=LINES)
    assert r.returncode == 0 and r.stdout.split() == ["10", "10", "10"], r.stderr
    r = tree.cli("exec", "--node", tree.root.url, "-n", "3", "--scatter", "--", "wc", "-l", input=LINES)
    assert r.returncode == 0 and sorted(int(n) for n in r.stdout.split()) == [3, 3, 4], r.stderr


def test_status_records_peers_and_dir(tree: Tree) -> None:
    with geryon.session(node=tree.root.url, secret=tree.secret) as s:
        (rec,) = s.status()
        assert rec.state is State.UNRESERVED and rec.count == 0
        addrs = s.reserve(4)
        assert [i["node"] for i in s.instances] == ["root", "a", "g", "b"]
        recs = s.status()
        assert [(r.index, r.node, r.count, r.state) for r in recs] == [     # immediate children only
            (0, "root", 1, State.OPEN), (1, "a", 2, State.OPEN), (3, "b", 1, State.OPEN)]
        s.chdir("/")
        s.exec('echo "$GERYON_INSTANCE $(pwd) $GERYON_NINSTANCES $GERYON_PEERS"; cat "$GERYON_PEERS_FILE"')
        assert s.wait(30) == [0, 0, 0, 0]
        lines = s.stdout.read().decode().splitlines()
        heads = sorted(line for line in lines if not line.startswith("tcp!"))
        assert heads == [f"{i} / 4 {' '.join(addrs)}" for i in range(4)]
        assert sorted(line for line in lines if line.startswith("tcp!")) == sorted(addrs * 4)
        assert [(r.state, r.cmd, r.statuses) for r in s.status()] == [
            (State.DONE, s.status()[0].cmd, (0,)), (State.DONE, s.status()[0].cmd, (0, 0)),
            (State.DONE, s.status()[0].cmd, (0,))]


def test_session_errors_are_clear(tree: Tree) -> None:
    with geryon.session(node=tree.root.url, secret=tree.secret) as s:
        with pytest.raises(SessionError, match="^exec before reserve: nothing is reserved$"):
            s.exec("true")
        with pytest.raises(SessionError, match="^wait before exec"):
            s.wait()
        s.reserve(1)
        with pytest.raises(SessionError, match="^already reserved"):
            s.reserve(1)
        with pytest.raises(SessionError, match="no such directory"):
            s.chdir("/no/such/dir")
        s.exec("true")
        with pytest.raises(SessionError, match="^already executing"):
            s.exec("true")
    with pytest.raises(SessionError, match="authentication failed"):
        geryon.session(node=tree.root.url, secret=b"w" * 32)
    # No secret given and none configured: one line naming `geryon init`, no unsigned request.
    with pytest.raises(SessionError, match="no cluster secret .*run `geryon init`"):
        geryon.session(node=tree.root.url)


def test_kill_and_kill_on_close(tree: Tree) -> None:
    with geryon.session(node=tree.root.url, secret=tree.secret) as s:
        s.reserve(4)
        s.exec(["sleep", "300"])
        wait_until(lambda: all(len(v[2]) == 1 for v in tree.usage().values()), 5)
        s.kill()
        assert s.wait(10) == [128 + signal.SIGTERM] * 4
        assert {r.state for r in s.status()} == {State.FAIL}
    with geryon.session(node=tree.root.url, secret=tree.secret, kill_on_close=True) as s:
        s.reserve(2)
        s.exec(["sleep", "300"])
    with pytest.raises(KeyError):                       # an exception in the block kills too
        with geryon.session(node=tree.root.url, secret=tree.secret) as s:
            s.reserve(2)
            s.exec(["sleep", "300"])
            raise KeyError("boom")


def test_res_zero_runs_on_the_root_and_filters_match(tree: Tree) -> None:
    r = tree.cli("exec", "--node", tree.root.url, "-n", "0", "--", "echo $GERYON_NODE")
    assert (r.returncode, r.stdout) == (0, "root\n"), r.stderr
    (count,) = json.loads(tree.cli("status", "--node", tree.root.url, "--json").stdout)
    r = tree.cli("exec", "--node", tree.root.url, "-n", "4", "--os", count["os"].lower(), "--arch", count["arch"],
                 "--", "true")
    assert r.returncode == 0, r.stderr


def test_the_client_as_root_over_the_registry(tree: Tree) -> None:
    r = tree.cli("exec", "-n", "3", "--", "echo $GERYON_NODE")          # GERYON_REGISTRY, no --node
    assert r.returncode == 0 and len(set(r.stdout.split())) == 3, r.stderr
    assert tree.cli("status").stdout == tree.cli("status", "--node", tree.root.url).stdout


CLIENT = """
import pathlib, sys, time, geryon
from registry.auth import load_secret
s = geryon.session(node=sys.argv[1], secret=load_secret(pathlib.Path(sys.argv[2])))
s.reserve(4)
s.exec("echo $$; exec sleep 300")
print(" ".join(s.stdout.readline().decode().strip() for _ in range(4)), flush=True)
time.sleep(300)
"""


def _client_pids(tree: Tree) -> tuple[Any, list[int]]:
    client = start_proc(tree.c, [sys.executable, "-c", CLIENT, tree.root.url, str(tree.c.secret_file)], "client")
    pids = [int(p) for p in client.readline(30).split()]         # one line: the pipe is buffered
    assert len(pids) == 4
    assert not any(pid_gone(p) for p in pids)
    return client, pids


def test_a_killed_client_leaves_nothing_behind(tree: Tree) -> None:
    client, pids = _client_pids(tree)
    client.expected_exit = True
    client.popen.send_signal(signal.SIGKILL)
    took = timed(lambda: all(pid_gone(p) for p in pids) and tree.idle(), LIVENESS)
    print(f"released {took:.2f}s after the client's kill -9")


def test_a_frozen_client_is_released_after_missed_heartbeats(tree: Tree) -> None:
    client, pids = _client_pids(tree)
    client.expected_exit = True
    client.popen.send_signal(signal.SIGSTOP)
    try:
        took = timed(lambda: all(pid_gone(p) for p in pids) and tree.idle(), LIVENESS + 3)
        print(f"released {took:.2f}s after the client froze")
    finally:
        client.popen.send_signal(signal.SIGKILL)
        client.popen.send_signal(signal.SIGCONT)


async def _raw_session(tree: Tree, *frames: Any) -> list[Any]:
    """Open a signed session on the root, send `frames`, return what comes back until it closes."""
    got: list[Any] = []
    async with aiohttp.ClientSession() as http:
        async with await Signer(tree.secret).connect(http, tree.root.url, "/v1/session") as ws:
            for frame in frames:
                await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
            async for msg in ws:
                doc = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else msg.data
                if doc != {"op": "ping"}:
                    got.append(doc)
    return got


@pytest.mark.parametrize("garbage, reason", [
    ("not json", "text frame is not JSON"),
    ('["a list"]', "text frame is not a JSON object"),
    ('{"op": "frobnicate", "id": 2}', "unknown op 'frobnicate'"),
    ('{"op": "reserve", "id": 2, "n": "four"}', "reserve needs an integer n"),
    (b"\x00", "binary frame shorter than its header"),
    (b"\x01\x00\x00\x00\x00hi", "a client may only send stdin frames, not kind 1"),
])
def test_garbage_on_the_session_socket_ends_it_and_releases(tree: Tree, garbage: Any, reason: str) -> None:
    reserve = json.dumps({"op": "reserve", "id": 1, "n": 2})
    got = asyncio.run(_raw_session(tree, reserve, garbage))
    assert got[0]["re"] == 1 and got[0]["ok"] and len(got[0]["instances"]) == 2
    assert got[-1] == {"op": "error", "error": f"protocol error: {reason}"}, got


def test_embedded_session_runs_on_this_machine() -> None:
    with geryon.session(tag=True) as s:
        s.reserve(1)
        s.exec(["sh", "-c", "cat; echo done"])
        s.stdin.write("input line\n")
        assert s.wait(10) == [0]
        assert s.stdout.read().decode().splitlines()[1:] == ["[0 " + s.instances[0]["node"] + "] done"]


def test_pick_load_prefers_the_idle_node(cluster: Cluster) -> None:
    cluster.start_registry()
    busy = cluster.start_node("busy", [], extra=["--cpus", "2", "--fake-load", "3"])
    cluster.start_node("idle", [], extra=["--cpus", "2", "--fake-load", "0.1", "--parent", busy.url])
    with cluster.client() as reg:
        wait_until(lambda: len(reg.find({"svc": "rstyx"})) == 2, 10)
    wait_until(lambda: '"nodes": 2' in run_cli(cluster, "status", "--node", busy.url, "--json").stdout, 10)
    for where in ((), ("--node", busy.url)):                          # over the registry, then the tree
        r = run_cli(cluster, "exec", *where, "-n", "2", "--pick", "load", "--", "echo $GERYON_NODE")
        assert r.stdout.split() == ["idle", "idle"], r.stderr
        r = run_cli(cluster, "exec", *where, "-n", "2", "--", "echo $GERYON_NODE")
        assert sorted(r.stdout.split()) == ["busy", "idle"], r.stderr
