"""Headless Firefox driven over WebDriver BiDi (aiohttp's WebSocket client), for the UI tests.

Debian's `firefox-esr` package speaks WebDriver BiDi itself (`--remote-debugging-port`), so
no geckodriver is needed and nothing is downloaded. `FirefoxBrowser` starts it with a fresh
profile (a few prefs that keep it off the network) and an ephemeral port (read from the
profile's WebDriverBiDiServer.json), opens a BiDi session on its one tab and offers the
same calls as the Chromium `Browser`: goto, evaluate, wait_for, status_of, screenshot, close.

Not here: Chromium (tests/ui/browser.py), which this class inherits its waiting and clean-up from.
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.ui.browser import Browser, BrowserError

FIREFOX_PREFS = {
    "app.update.disabledForTesting": True, "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False, "toolkit.telemetry.enabled": False,
    "datareporting.healthreport.uploadEnabled": False, "browser.safebrowsing.update.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/", "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False, "extensions.update.enabled": False,
    "browser.startup.homepage_override.mstone": "ignore", "browser.aboutwelcome.enabled": False,
    "network.proxy.type": 0, "app.normandy.enabled": False, "messaging-system.rsexperimentloader.enabled": False,
}


def firefox_path() -> str | None:
    """Debian's firefox-esr binary, if installed."""
    return shutil.which("firefox-esr") or shutil.which("firefox")


def _value(remote: dict[str, Any]) -> Any:
    """A BiDi serialized remote value as the Python value (the JSON-like ones; others as None)."""
    kind, value = remote.get("type"), remote.get("value")
    if kind in ("string", "boolean"):
        return value
    if kind == "number":
        return {"NaN": float("nan"), "-0": -0.0, "Infinity": float("inf"), "-Infinity": float("-inf")}.get(value, value)
    if kind == "bigint":
        return int(value)
    if kind in ("array", "set"):
        return [_value(v) for v in value or []]
    if kind in ("object", "map"):
        return {(k if isinstance(k, str) else str(_value(k))): _value(v) for k, v in value or []}
    return None


class FirefoxBrowser(Browser):
    """One headless Firefox and its one tab."""

    def __init__(self, tmp_path: Path, start_timeout: float = 60.0) -> None:  # noqa: D107 - the class says it
        binary = firefox_path()
        if binary is None:
            raise BrowserError("firefox is not installed (tests/run installs Debian's firefox-esr package)")
        self.profile = tmp_path / "firefox-profile"
        self.profile.mkdir(parents=True, exist_ok=True)
        (self.profile / "user.js").write_text("".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n"
                                                      for k, v in FIREFOX_PREFS.items()))
        self.log_path = tmp_path / "firefox.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in close()
        env = {**os.environ, "MOZ_HEADLESS": "1", "HOME": str(self.profile), "MOZ_CRASHREPORTER_DISABLE": "1"}
        self.proc = subprocess.Popen([binary, "--headless", "--no-remote", "--profile", str(self.profile),
                                      "--remote-debugging-port=0", "--width=1400", "--height=1000", "about:blank"],
                                     stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env=env)
        self.loop = asyncio.new_event_loop()
        self._ids = itertools.count(1)
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.context = ""
        self.js_errors: list[str] = []       # uncaught exceptions in the page, as the browser reported them
        try:
            self.loop.run_until_complete(self._attach(start_timeout))
        except BaseException:
            self.close()
            raise

    async def _attach(self, timeout: float) -> None:
        port_file = self.profile / "WebDriverBiDiServer.json"
        deadline = time.monotonic() + timeout
        port = 0
        while not port:
            if self.proc.poll() is not None:
                raise BrowserError(f"firefox exited ({self.proc.returncode}): {self.log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise BrowserError(f"firefox did not open its WebDriver BiDi port in {timeout}s")
            try:
                port = int(json.loads(port_file.read_text())["ws_port"])
            except (OSError, ValueError, KeyError):
                await asyncio.sleep(0.1)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        while self._ws is None:
            try:
                self._ws = await self._http.ws_connect(f"ws://127.0.0.1:{port}/session", max_msg_size=0)
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        await self._call("session.new", capabilities={"alwaysMatch": {"acceptInsecureCerts": True}})
        contexts: list[dict[str, Any]] = []
        while not contexts:
            contexts = (await self._call("browsingContext.getTree", maxDepth=0)).get("contexts", [])
            if not contexts:
                if time.monotonic() > deadline:
                    raise BrowserError("firefox has no tab")
                await asyncio.sleep(0.1)
        self.context = contexts[0]["context"]
        await self._call("session.subscribe", events=["log.entryAdded"])

    async def _call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        ident = next(self._ids)
        await self._ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = await asyncio.wait_for(self._ws.receive(), 60)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise BrowserError(f"the WebDriver BiDi connection closed ({msg.type})")
            doc = json.loads(msg.data)
            if doc.get("method") == "log.entryAdded" and doc["params"].get("type") == "javascript":
                self.js_errors.append(str(doc["params"].get("text")))
            if doc.get("id") == ident:
                if doc.get("type") == "error" or "error" in doc:
                    raise BrowserError(f"{method}: {doc.get('error')}: {doc.get('message')}")
                return doc.get("result", {})

    async def _evaluate(self, expression: str, await_promise: bool) -> Any:
        result = await self._call("script.evaluate", expression=expression, target={"context": self.context},
                                  awaitPromise=await_promise, resultOwnership="none")
        if result.get("type") == "exception":
            details = result.get("exceptionDetails", {})
            raise BrowserError(f"{expression}: {details.get('text')}")
        return _value(result.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        return self.loop.run_until_complete(self._evaluate(expression, False))

    def _navigate(self, url: str) -> None:
        self.call("browsingContext.navigate", context=self.context, url=url, wait="complete")

    async def _fetch_status(self, url: str) -> int:
        return int(await self._evaluate(f"fetch({json.dumps(url)}).then(r => r.status)", True))

    def screenshot(self, path: Path, selector: str | None = None, scale: float = 1.0) -> Path:
        """Save the whole page (or the element `selector` matches) as a PNG (`scale` is Chromium's only)."""
        if selector is not None:
            box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                                ".getBoundingClientRect(); return {x: r.x + scrollX, y: r.y + scrollY, "
                                "width: r.width, height: r.height}; })()")
        else:
            size = self.evaluate("({width: document.documentElement.scrollWidth,"
                                 " height: document.documentElement.scrollHeight})")
            box = {"x": 0, "y": 0, "width": max(size["width"], 800), "height": min(max(size["height"], 400), 4000)}
        shot = self.call("browsingContext.captureScreenshot", context=self.context, origin="document",
                         clip={"type": "box", **box})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
