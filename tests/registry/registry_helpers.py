"""Helpers for the registry tests: in-thread servers, owned subprocesses, polling.

Named uniquely (not `conftest`) so that `from registry_helpers import ...` cannot pick up
another package's conftest module.
"""
from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.server import RegistryServer, ServerConfig

SERVE = [sys.executable, "-c", "from geryon.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """A RegistryServer on its own loop in a thread (for in-process tests)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.server = RegistryServer(config)
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-registry")

    def __enter__(self) -> ServerThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    @property
    def url(self) -> str:
        return self.server.url

    def call(self, fn: Callable[[], object]) -> object:
        async def run() -> object:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def __exit__(self, *exc: object) -> None:
        if self.loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Proc:
    """A subprocess we own: killed (and reaped) at teardown."""

    def __init__(self, popen: subprocess.Popen[str], err: Any) -> None:
        self.popen = popen
        self.err = err

    def stderr(self) -> str:
        return Path(self.err.name).read_text()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def kill(self) -> None:
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGCONT)
                self.popen.kill()
            except ProcessLookupError:
                pass
        self.popen.wait(10)
        if self.popen.stdout:
            self.popen.stdout.close()
        self.err.close()

    def readline(self, timeout: float = 10) -> str:
        """One stdout line (blocking with a deadline)."""
        assert self.popen.stdout is not None
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.popen.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                raise TimeoutError("no output from subprocess")
            return self.popen.stdout.readline()
        finally:
            sel.close()


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.02) -> float:
    """Poll `pred` until true; return the seconds it took; fail after `timeout`."""
    start = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Cluster:
    """Real `geryon` processes on loopback, sharing one secret."""

    def __init__(self, procs: Callable[..., Proc], secret_file: Path, tmp_path: Path) -> None:
        self.procs = procs
        self.secret_file = secret_file
        self.tmp_path = tmp_path
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def registry(self, *extra: str, port: int | None = None, mdns: bool = False) -> Proc:
        """Start `geryon registry serve` and wait until it listens."""
        port = port or self.port
        args = ["registry", "serve", "--listen", f"127.0.0.1:{port}", "--secret-file", str(self.secret_file),
                "--state", str(self.tmp_path / "state.json")]
        args += ["--mdns-interface", "127.0.0.1"] if mdns else ["--no-mdns"]
        p = self.procs(*args, *extra)
        line = p.readline(20)
        assert "listening on" in line, line + p.stderr()
        return p

    def register(self, name: str, *attrs: str, persist: bool = False, discover: bool = False,
                 env: dict[str, str] | None = None) -> Proc:
        """Start `geryon register NAME ATTRS...` and wait until it is registered."""
        args = ["register", "--secret-file", str(self.secret_file)]
        if not discover:
            args += ["--registry", self.url]
        if persist:
            args.append("--persist")
        p = self.procs(*args, name, *attrs, env=env)
        line = p.readline(20)
        assert line.startswith("registered"), line + p.stderr()
        return p
