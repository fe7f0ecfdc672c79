"""Helpers for the security tests: signed raw requests, raw sockets, log sizes.

Named uniquely (not `conftest`) so `from tests.security.security_helpers import ...` is unambiguous.
"""
from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from registry.auth import ServerIdentity, sign_headers


def signed(secret: bytes, url: str, method: str, path: str, body: bytes = b"",
           timeout: float = 30) -> tuple[int, Any]:
    """Send one signed request with exactly `body`; return (status, decoded JSON or text)."""
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=timeout)
    try:
        conn.request("GET", "/v1/hello")
        ident = ServerIdentity.from_wire(json.loads(conn.getresponse().read()))
        headers = sign_headers(secret, method, path, server=ident, host=split.netloc, body=body,
                               headers={"Content-Type": "application/json"})
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(data)
    except ValueError:
        return resp.status, data.decode(errors="replace")


def deep(n: int) -> bytes:
    """A JSON document nested `n` deep inside an object's field."""
    return b'{"query": ' + b"[" * n + b"]" * n + b"}"


def log_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0
