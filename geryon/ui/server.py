"""The dashboard's HTTP server (aiohttp): pages, live updates, and who may see them.

Routes (GET only; everything but /login needs the session cookie):
  /login?token=T        spend a one-time login token: set the session cookie, go to /cluster
  /cluster              nodes, disks, registry services         (live: /events/cluster)
  /jobs                 the job records, newest first          (live: /events/jobs)
  /jobs/JOB             one job: progress, timeline, slowest tasks, skew, failures, events
                        (live: /events/job/JOB)
  /jobs/JOB/logs/T.aN   an attempt's whole stderr, as text
  /events/...           server-sent events: `data: {"parts": {ID: HTML}, ...}` whenever
                        what a page shows changed; `static/ui.js` puts each part in place
  /static/ui.js, /static/ui.css

Defences, in the order a request meets them: a body or a method other than GET/HEAD is
refused (413, 405) and aiohttp refuses oversize request lines and headers (400); a
cross-site request (`Sec-Fetch-Site` other than same-origin or none, or a foreign
`Origin`) is refused (403); then the session cookie is required (401). Every answer
forbids framing, sniffing, caching and scripts or styles from anywhere but here (CSP).

Not here: the click verb and where the secret comes from (`geryon.cli.ui`); reading the job
records a page shows (`geryon.ui.jobrecords`).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote

from aiohttp import web

from geryon.errors import GeryonError
from geryon.mapreduce.attempt import AttemptId
from geryon.mapreduce.jobhistory import JobHistory, JobState
from geryon.ui import DEFAULT_PORT, pages
from geryon.ui.access import Access, AccessRefused
from geryon.ui.cluster import DEFAULT_REFRESH, ClusterSnapshot, ClusterWatch, NodeState
from geryon.ui.jobrecords import JobRecords, read_tail
from registry.signer import url_host

log = logging.getLogger(__name__)

DEFAULT_LIVE_INTERVAL = 0.5
"""Seconds between looks for changes to push to a live page."""

DEFAULT_KEEPALIVE = 15.0
"""Seconds of quiet after which a live stream sends a comment (proxies drop silent streams)."""

DEFAULT_MAX_LIVE = 64
"""Live streams served at once."""

DEFAULT_MAX_LOG = 4 << 20
"""Bytes of one stderr log served (the store caps logs at 1 MiB)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_FETCH_SITES_OK = ("same-origin", "none")
_STATIC = {"ui.js": "text/javascript", "ui.css": "text/css"}


@dataclass(frozen=True)
class DashboardConfig:
    """Everything a dashboard needs; built by the CLI."""

    secret: bytes
    jobs_dir: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    refresh: float = DEFAULT_REFRESH
    live_interval: float = DEFAULT_LIVE_INTERVAL
    check_every: float | None = None          # None: the ClusterWatch default
    max_live: int = DEFAULT_MAX_LIVE


class Dashboard:
    """A running dashboard: `async with Dashboard(config, registry) as d:` serves until the block ends.

    Args:
        config: where to listen, the secret, the job records.
        registry: a registry client (`index()`, `ndb()`, called in threads), or None: no cluster.
    """

    def __init__(self, config: DashboardConfig, registry: Any = None) -> None:
        self.config = config
        self.registry = registry
        self.history = JobHistory(config.jobs_dir)
        self.port = config.port
        self.access: Access | None = None
        self.watch: ClusterWatch | None = None
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._live = 0
        self.records = JobRecords(self.history)

    # -- life cycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        if self.registry is not None:
            kw = {} if cfg.check_every is None else {"check_every": cfg.check_every}
            self.watch = ClusterWatch(self.registry, cfg.secret, refresh=cfg.refresh, **kw)
            await self.watch.start()
        app = web.Application(client_max_size=1024, middlewares=[self._guard])
        app.on_response_prepare.append(_secure_headers)
        app.add_routes([web.get("/login", self._login), web.get("/", self._root),
                        web.get("/cluster", self._cluster), web.get("/jobs", self._jobs),
                        web.get("/jobs/{job}", self._job), web.get("/jobs/{job}/logs/{name}", self._log),
                        web.get("/events/cluster", self._cluster_events), web.get("/events/jobs", self._jobs_events),
                        web.get("/events/job/{job}", self._job_events), web.get("/static/{name}", self._static)])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, max_line_size=8190,
                                     max_field_size=8190, max_headers=64)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        self.access = Access(cfg.secret, audience_of(self.port))
        log.info("dashboard listening on %s", self.url)

    async def close(self) -> None:
        """Idempotent."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.watch is not None:
            await self.watch.close()
            self.watch = None

    async def __aenter__(self) -> Dashboard:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{url_host(host)}:{self.port}"

    def login_url(self) -> str:
        """A fresh one-time login URL (what `geryon ui` prints)."""
        assert self.access is not None
        return login_url(self.url, self.access.mint())

    @property
    def cookie(self) -> str:
        return cookie_name(self.port)

    # -- the guard ------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _refuse(405, "the dashboard is read-only: GET only", {"Allow": "GET, HEAD"})
        if request.content_length or request.headers.get("Transfer-Encoding"):
            return _refuse(413, "requests to the dashboard carry no body")
        site = request.headers.get("Sec-Fetch-Site")
        origin = request.headers.get("Origin")
        if (site is not None and site not in _FETCH_SITES_OK) or (origin is not None and origin != _origin(request)):
            log.info("dashboard: refused a cross-site request for %s (from %s)", request.path, origin or site)
            return _refuse(403, "cross-site requests are refused")
        if request.path == "/login":
            return await handler(request)
        assert self.access is not None
        if not self.access.admits(request.cookies.get(self.cookie)):
            return _refuse(401, "this dashboard needs a login: open the URL that `geryon ui` printed "
                                "(or make one: `geryon ui --login-url URL`)")
        return await handler(request)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        assert self.access is not None
        try:
            session = self.access.redeem(request.query.get("token", ""))
        except AccessRefused as exc:
            return _refuse(403, str(exc))
        resp = web.HTTPSeeOther("/cluster")
        resp.set_cookie(self.cookie, session, httponly=True, samesite="Strict", path="/",
                        max_age=int(self.access.session_ttl), secure=request.secure)
        return resp

    # -- pages ----------------------------------------------------------------------------------
    async def _root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/cluster")

    def _snapshot(self) -> ClusterSnapshot:
        if self.watch is None:
            return ClusterSnapshot(taken=time.time(), error="no registry: this dashboard shows the job records only")
        return self.watch.snapshot

    async def _cluster(self, request: web.Request) -> web.StreamResponse:
        tasks = await _blocking(self.records.running_tasks)
        return _html(pages.cluster_page(self._snapshot(), time.time(), tasks))

    async def _jobs(self, request: web.Request) -> web.StreamResponse:
        rows = await _blocking(self.records.rows)
        return _html(pages.jobs_page(rows, time.time(), self.history.root))

    async def _job(self, request: web.Request) -> web.StreamResponse:
        try:
            record, tails = await _blocking(self.records.record, request.match_info["job"])
        except GeryonError as exc:
            return _refuse(404, str(exc), logged_in=True)
        return _html(pages.job_page(record, time.time(), tails))

    async def _log(self, request: web.Request) -> web.StreamResponse:
        job, name = request.match_info["job"], request.match_info["name"]
        try:
            aid: AttemptId | None = AttemptId.parse(name)
        except ValueError:
            aid = None
        try:
            paths = await _blocking(self.history.log_paths, job, aid.task) if aid else []
        except GeryonError as exc:
            return _refuse(404, str(exc), logged_in=True)
        path = next((p for t, a, p in paths if aid and a == aid.attempt), None)
        if path is None:
            return _refuse(404, f"job {job} has no stderr for {name}", logged_in=True)
        data = await _blocking(read_tail, path, DEFAULT_MAX_LOG)
        return web.Response(body=data, content_type="text/plain", charset="utf-8")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC:
            return _refuse(404, "no such file", logged_in=True)
        return web.Response(body=_asset(name), content_type=_STATIC[name], charset="utf-8")

    # -- live updates ---------------------------------------------------------------------------
    async def _stream(self, request: web.Request,
                      produce: Callable[[], Awaitable[tuple[Any, dict[str, str] | None]]]) -> web.StreamResponse:
        """Server-sent events: the parts `produce` gives whenever its stamp changes."""
        if self._live >= self.config.max_live:
            return _refuse(503, "too many live pages open", logged_in=True)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
        self._live += 1
        try:
            await resp.prepare(request)
            last: Any = object()
            quiet = 0.0
            while not self._closing.is_set():
                stamp, parts = await produce()
                if stamp != last and parts is not None:
                    last = stamp
                    doc = {"parts": parts, "updated": f"as of {pages.clock_text(time.time())}", "stamp": repr(stamp)}
                    await resp.write(b"data: " + json.dumps(doc).encode() + b"\n\n")
                    quiet = 0.0
                elif quiet >= DEFAULT_KEEPALIVE:
                    await resp.write(b": keepalive\n\n")
                    quiet = 0.0
                try:
                    await asyncio.wait_for(self._closing.wait(), self.config.live_interval)
                except asyncio.TimeoutError:
                    quiet += self.config.live_interval
        except (ConnectionError, asyncio.CancelledError, RuntimeError):
            pass                                          # the browser went away, or we are closing
        finally:
            self._live -= 1
        return resp

    async def _cluster_events(self, request: web.Request) -> web.StreamResponse:
        async def produce() -> tuple[Any, dict[str, str] | None]:
            snap = self._snapshot()
            tasks = await _blocking(self.records.running_tasks)
            now = time.time()
            # dead and unreachable nodes say how long ago: a new text every second
            ticking = any(n.state != NodeState.LIVE for n in snap.nodes)
            return (snap.version, int(now) if ticking else 0, sorted(tasks.items())), \
                pages.cluster_parts(snap, now, tasks)
        return await self._stream(request, produce)

    async def _jobs_events(self, request: web.Request) -> web.StreamResponse:
        async def produce() -> tuple[Any, dict[str, str] | None]:
            stamp = await _blocking(self.records.jobs_stamp)
            rows = await _blocking(self.records.rows)
            running = any(r.get("state") == JobState.RUNNING for r in rows)
            return (stamp, int(time.time()) if running else 0), {pages.PART_JOBS: pages.jobs_part(rows, time.time())}
        return await self._stream(request, produce)

    async def _job_events(self, request: web.Request) -> web.StreamResponse:
        job = request.match_info["job"]

        async def produce() -> tuple[Any, dict[str, str] | None]:
            try:
                stamp = await _blocking(self.records.job_stamp, job)
                record, tails = await _blocking(self.records.record, job)
            except GeryonError:
                return None, None
            ticking = int(time.time()) if record.get("state") == JobState.RUNNING else 0
            return (stamp, ticking), pages.job_parts(record, time.time(), tails)
        return await self._stream(request, produce)


# -- small pieces ------------------------------------------------------------------------------
def audience_of(port: int) -> str:
    """What a dashboard's login tokens are bound to: its port (one cluster's dashboards differ by it)."""
    return f"geryon-ui:{port}"


def cookie_name(port: int) -> str:
    """The session cookie's name: per port, since cookies do not tell ports apart."""
    return f"geryon-ui-{port}"


def login_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}/login?token={quote(token, safe='')}"


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def _secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def _refuse(status: int, text: str, headers: dict[str, str] | None = None, logged_in: bool = False
            ) -> web.Response:
    """A refusal page; without the login it links no stylesheet or script (they would be refused too)."""
    return web.Response(status=status, text=pages.message_page(f"{status}", text, assets=logged_in),
                        content_type="text/html", headers=headers)


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", charset="utf-8")


async def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


_ASSETS: dict[str, bytes] = {}


def _asset(name: str) -> bytes:
    if name not in _ASSETS:
        _ASSETS[name] = resources.files("geryon.ui").joinpath("static", name).read_bytes()
    return _ASSETS[name]


async def serve(config: DashboardConfig, registry: Any, stop: asyncio.Event,
                announce: Callable[[Dashboard], None] = lambda d: None) -> None:
    """Run a dashboard until `stop` is set; `announce` is told once it listens (prints the login URL)."""
    async with Dashboard(config, registry) as dashboard:
        announce(dashboard)
        await stop.wait()


__all__ = ["DEFAULT_PORT", "Dashboard", "DashboardConfig", "audience_of", "cookie_name", "login_url", "serve"]
