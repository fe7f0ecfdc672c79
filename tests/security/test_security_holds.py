"""A node's output holds (`GET /v1/jobs/{job}/hold-output`, geryon/node/heldoutputs.py) are for
secret holders only: unsigned, wrongly signed or badly named holds are refused and write nothing,
and a hold's id can only name a job's own directory."""
from __future__ import annotations

import asyncio
import http.client
import os
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from registry.signer import Signer
from tests.node.node_helpers import Cluster, wait_until
from tests.security.security_helpers import signed


async def _hold(url: str, secret: bytes, job: str, opened: asyncio.Event, release: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as http_session:
        async with await Signer(secret).connect(http_session, url, f"/v1/jobs/{job}/hold-output") as ws:
            opened.set()
            await release.wait()
            await ws.close()


def test_output_holds_refuse_strangers_and_bad_names(cluster: Cluster, secret: bytes, tmp_path: Path) -> None:
    node = cluster.start_node("n0", register=False, extra=["--step-output-grace", "0.2"])
    held = tmp_path / "work-n0" / "held-outputs"
    split = urlsplit(node.url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=30)
    try:
        conn.request("GET", "/v1/jobs/j1-s1/hold-output", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
        assert conn.getresponse().status == 401
    finally:
        conn.close()
    assert signed(os.urandom(32), node.url, "GET", "/v1/jobs/j1-s1/hold-output")[0] == 401
    for bad in (".geryon-tmp-j1", "-x", "a%2Fb", "x" * 300):
        status, doc = signed(secret, node.url, "GET", f"/v1/jobs/{bad}/hold-output")
        assert status in (400, 404), (bad, status, doc)
    assert list(held.iterdir()) == []
    # a secret holder's hold is written down while it lasts; after it closes and the grace
    # passes, the output it held goes (here a job directory made by hand), and so does the note
    out = tmp_path / "n0-c0" / "j2-s1"
    out.mkdir()
    (out / "part-00000").write_text("a\t1\n")

    async def hold_and_release() -> None:
        opened, release = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(_hold(node.url, secret, "j2-s1", opened, release))
        await asyncio.wait_for(opened.wait(), 30)
        assert [p.name for p in held.iterdir()] == ["j2-s1"]
        assert out.is_dir()
        release.set()
        await task

    asyncio.run(hold_and_release())
    wait_until(lambda: not out.exists() and not list(held.iterdir()), 30)


@pytest.mark.parametrize("grace", ["-1", "soon"])
def test_a_bad_step_output_grace_is_one_line(cluster: Cluster, grace: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "from geryon.cli import main; main()", "node", "--standalone",
                           "--step-output-grace", grace, "--listen", "127.0.0.1:0"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "--step-output-grace" in proc.stderr
