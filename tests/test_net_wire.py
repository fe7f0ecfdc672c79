"""The client side of the wire to nodes (issue 13: one node connection): one place makes an aiohttp
session to nodes (`geryon.net.aio.node_http`), with our TLS connector and the caller's timeouts."""
from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import aiohttp

from geryon.net.aio import UNREACHABLE, node_http
from registry.errors import RegistryError

REPO = Path(__file__).resolve().parent.parent


def session_makers(root: Path) -> list[str]:
    """`file:line` of every `ClientSession(...)` call under `root` (a package directory)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name)) \
                    and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "ClientSession":
                found.append(f"{path.relative_to(root.parent).as_posix()}:{node.lineno}")
    return found


def test_one_place_makes_an_aiohttp_session_to_nodes() -> None:
    assert [f.split(":")[0] for f in session_makers(REPO / "geryon")] == ["geryon/net/aio.py"]


def test_the_scan_finds_a_session_made_elsewhere(tmp_path: Path) -> None:
    pkg = tmp_path / "geryon"
    pkg.mkdir()
    (pkg / "x.py").write_text("import aiohttp\nfrom aiohttp import ClientSession\n"
                              "a = aiohttp.ClientSession()\nb = ClientSession(timeout=None)\n")
    assert session_makers(pkg) == ["geryon/x.py:3", "geryon/x.py:4"]


def test_node_http_has_the_callers_timeouts_and_our_connector() -> None:
    async def make() -> tuple[aiohttp.ClientTimeout, bool]:
        async with node_http(total=7, sock_connect=2) as http:
            return http.timeout, isinstance(http.connector, aiohttp.TCPConnector)
    timeout, tcp = asyncio.run(make())
    assert (timeout.total, timeout.sock_connect) == (7, 2) and tcp
    assert {aiohttp.ClientError, asyncio.TimeoutError, OSError, RegistryError} == set(UNREACHABLE)
