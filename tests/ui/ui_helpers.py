"""Helpers for the dashboard tests: a `geryon ui` subprocess we own, and raw HTTP requests to it."""
from __future__ import annotations

import http.client
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from tests.node.node_helpers import Proc

GERYON = [sys.executable, "-c", "from geryon.cli import main; main()"]


class UiProc:
    """`geryon ui ...` (or `registry serve --ui`): its URL and first login URL, read from its output."""

    def __init__(self, tmp_path: Path, args: Sequence[str], tag: str = "ui", secret_file: Path | None = None) -> None:
        self.secret_file = secret_file
        self.proc = Proc([*GERYON, *args], tmp_path / f"{tag}.err", env={"XDG_CONFIG_HOME": str(tmp_path / "config"),
                                                                        "XDG_DATA_HOME": str(tmp_path / "data")})
        self.registry_line = ""
        try:
            while True:
                line = self.proc.readline(timeout=60)
                if not line:
                    raise AssertionError(f"the dashboard exited: {self.proc.stderr()}")
                if line.startswith("registry: listening on"):
                    self.registry_line = line
                if line.startswith("dashboard: open "):
                    self.login_url = line.split("dashboard: open ", 1)[1].strip()
                    break
        except BaseException:
            self.proc.stop()
            raise
        parts = urlsplit(self.login_url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.cookie_name = f"geryon-ui-{self.port}"

    def request(self, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
                body: bytes | None = None, cookie: str | None = None) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request on a fresh connection."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            h = dict(headers or {})
            if cookie is not None:
                h["Cookie"] = f"{self.cookie_name}={cookie}"
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def mint(self) -> str:
        """A fresh login URL, made with the cluster secret as `geryon ui --login-url` makes it."""
        from geryon.ui.access import Access
        from geryon.ui.server import audience_of, login_url
        from registry.auth import load_secret

        assert self.secret_file is not None
        return login_url(self.base, Access(load_secret(self.secret_file), audience_of(self.port)).mint())

    def login(self, url: str | None = None) -> str:
        """Spend a login URL (a fresh one unless given); the session cookie's value."""
        parts = urlsplit(url or self.mint())
        status, headers, body = self.request(f"{parts.path}?{parts.query}")
        assert status == 303, (status, body[:500])
        cookie = headers["set-cookie"]
        name, _, rest = cookie.partition("=")
        assert name == self.cookie_name, cookie
        return rest.split(";", 1)[0]

    def stop(self) -> None:
        self.proc.stop(signal.SIGTERM)
