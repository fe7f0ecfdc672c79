"""Headless Chromium driven over the DevTools protocol (aiohttp's WebSocket client), for the UI tests.

Debian's `chromium` package; nothing is downloaded. `Browser` starts it with a fresh
profile and an ephemeral debugging port (read from the profile's DevToolsActivePort),
attaches to its page, and offers the few calls the tests need: go to a URL, evaluate
JavaScript, wait for a DOM condition, save a screenshot. `close()` kills the browser's
whole process group, also when a test failed.

Not here: Firefox (tests/ui/firefox.py, WebDriver BiDi; it reuses this class's waiting and clean-up).
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-proxy-server", "--disable-extensions", "--disable-default-apps", "--mute-audio",
                  "--hide-scrollbars", "--window-size=1400,1000", "--remote-debugging-port=0"]


def chromium_path() -> str | None:
    """Debian's chromium binary, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserError(AssertionError):
    """The browser said no, or a condition never came true."""


class Browser:
    """One headless Chromium and its one page."""

    def __init__(self, tmp_path: Path, start_timeout: float = 60.0) -> None:
        binary = chromium_path()
        if binary is None:
            raise BrowserError("chromium is not installed (tests/run installs Debian's chromium package)")
        self.profile = tmp_path / "chromium-profile"
        self.profile.mkdir(parents=True, exist_ok=True)
        self.log_path = tmp_path / "chromium.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.loop = asyncio.new_event_loop()
        self._ids = itertools.count(1)
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.js_errors: list[str] = []       # uncaught exceptions in the page, as the browser reported them
        try:
            self.loop.run_until_complete(self._attach(start_timeout))
        except BaseException:
            self.close()
            raise

    async def _attach(self, timeout: float) -> None:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited ({self.proc.returncode}): {self.log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium did not open its debugging port in {timeout}s")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        pages: list[dict[str, Any]] = []
        while not pages:
            async with self._http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                pages = [t for t in await resp.json(content_type=None) if t.get("type") == "page"]
            if not pages:
                if time.monotonic() > deadline:
                    raise BrowserError("chromium has no page")
                await asyncio.sleep(0.1)
        self._ws = await self._http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self._call("Page.enable")
        await self._call("Runtime.enable")

    async def _call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        ident = next(self._ids)
        await self._ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = await asyncio.wait_for(self._ws.receive(), 60)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise BrowserError(f"the DevTools connection closed ({msg.type})")
            doc = json.loads(msg.data)
            if doc.get("method") == "Runtime.exceptionThrown":
                details = doc["params"]["exceptionDetails"]
                self.js_errors.append(str(details.get("exception", {}).get("description") or details.get("text")))
            if doc.get("id") == ident:
                if "error" in doc:
                    raise BrowserError(f"{method}: {doc['error']}")
                return doc.get("result", {})

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command's result."""
        return self.loop.run_until_complete(self._call(method, **params))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.2) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except BrowserError:
                value = None                 # a navigation in flight
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"not true within {timeout}s: {expression}")
            time.sleep(interval)

    def _navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def goto(self, url: str, timeout: float = 60.0) -> None:
        """Navigate and wait until the document has loaded."""
        self._navigate(url)
        self.wait_for(f"document.readyState === 'complete' && location.href.startsWith({json.dumps(url.split('?')[0])})"
                      " || (document.readyState === 'complete' && location.pathname !== '/login')", timeout)

    def status_of(self, url: str) -> int:
        """The HTTP status a same-page fetch of `url` gets (with this browser's cookies)."""
        return int(self.loop.run_until_complete(self._fetch_status(url)))

    async def _fetch_status(self, url: str) -> int:
        r = await self._call("Runtime.evaluate", expression=f"fetch({json.dumps(url)}).then(r => r.status)",
                             awaitPromise=True, returnByValue=True)
        return r["result"]["value"]

    def screenshot(self, path: Path, selector: str | None = None, scale: float = 1.0) -> Path:
        """Save the whole page (or the element `selector` matches) as a PNG."""
        if selector is not None:
            box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                                ".getBoundingClientRect(); return {x: r.x + scrollX, y: r.y + scrollY, "
                                "width: r.width, height: r.height}; })()")
            clip = {**box, "scale": scale}
        else:
            metrics = self.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics.get("contentSize")
            clip = {"x": 0, "y": 0, "width": max(size["width"], 800), "height": min(max(size["height"], 400), 4000),
                    "scale": scale}
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        """Kill the browser and everything it started; idempotent."""
        try:
            if self._ws is not None:
                self.loop.run_until_complete(self._ws.close())
            if self._http is not None:
                self.loop.run_until_complete(self._http.close())
        except Exception:
            pass
        self._ws = self._http = None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)     # helpers that outlived the main process
        except (ProcessLookupError, PermissionError):
            pass
        if not self.loop.is_closed():
            self.loop.close()
        if not self._log.closed:
            self._log.close()
