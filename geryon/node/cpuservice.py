"""The cpu service: run a command block on this node with named disks mounted (rcpu).

Routes (signed with the cluster secret):
  GET /v1/cpu/run              WebSocket: the request, then stdout/stderr frames and the exit
  GET /v1/cpu/exports/{hash}   200 if the client files with that hash are cached here
  PUT /v1/cpu/exports/{hash}   a tar of the client's files (`rcpu --export`), cached by hash
  GET /v1/cpu/load             the real load, the virtual load and its generation (dsh)
  POST /v1/cpu/claim           `{"expect": GENERATION}`: count a dispatch unless another came
                               since (409 and the new load: choose again); see geryon.node.virtualload

Every run is counted in the virtual load the moment it is accepted (once: a run carrying
the token of its claim was counted by the claim).

"Mounting" without FUSE: each run gets a directory `$n` holding one entry per disk
(`geryon.node.runmounts`); `$n/client` is the cached export. The command runs in its own process group, killed when the client
asks or goes away. Frames: binary `\\x01`+bytes (stdout), `\\x02`+bytes (stderr); text
JSON `{"op": "started"|"exit"|"error", ...}`. Not here: choosing cpus (the client does).
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import re
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web

from geryon.node.bodies import read_bounded
from geryon.node.chunkservice import ServedChunk
from geryon.cluster.hostfacts import LoadSource, host_source
from geryon.records.untar import UnpackLimits, UnpackRefused, extract, remove_tree, sweep_staging
from geryon.node.runmounts import RunMounts, RunRefused, remove_run_dir
from geryon.node.virtualload import VirtualLoad
from registry import jsondoc
from registry.auth import ServerIdentity, body_limit
from registry.channel import Channel, ChannelRefused, accept
from registry.signer import Signer
from shell.block import command_argv
from geryon.defaults import DEFAULT_MAX_EXPORT, DEFAULT_KILL_GRACE

log = logging.getLogger(__name__)

# The run request's shape (registry.jsondoc checks it before anything is read from it).
_RUN_REQUEST = {"cmd": jsondoc.ANY, "env": jsondoc.optional(jsondoc.OBJECT),
                "disks": jsondoc.optional(jsondoc.OBJECTS), "cpudisk": jsondoc.optional(jsondoc.OBJECT),
                "export": jsondoc.optional(jsondoc.STR)}

STDOUT, STDERR = 1, 2
"""First byte of a binary output frame."""

DEFAULT_CLAIM_BODY = 1 << 10
"""Largest body of `POST /v1/cpu/claim`, in bytes."""

DEFAULT_CLAIM_SECONDS = 60.0
"""Seconds a claim's token spares its run from being counted again (a slow export upload)."""

DEFAULT_NOTIFY_INTERVAL = 0.1
"""Seconds between two tellings of the registry that dispatches were counted (the later one
tells all that came meanwhile)."""

DEFAULT_MAX_PENDING_CLAIMS = 10_000
"""Most claims remembered between `POST /v1/cpu/claim` and the run that uses it."""

_HASH = re.compile(r"[0-9a-f]{64}\Z")


def exit_status(returncode: int) -> int:
    """A shell-style exit status: 128+N for a command killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


class CpuService:
    """Runs commands for rcpu.

    Args:
        node: this node's name (`$GERYON_NODE` in commands).
        chunks: the chunks served here, by name.
        self_url: this node's `http://addr:port`, to recognise its own chunks in URLs.
        secret: signs requests to other nodes when copying their chunks.
        work_dir: where run directories and the export cache live.
        unpack: limits on what one export may unpack to (symbolic links inside it are kept).
        on_start: awaited after each dispatch is counted (the daemon tells the registry).
        kill_grace: seconds between SIGTERM and SIGKILL.
        source: this host's facts (real load, cores, memory) for `GET /v1/cpu/load`.
        virtual: the virtual load to start from (its decay settings).
        clock: seconds, for the virtual load (tests pass their own).
    """

    def __init__(self, node: str, chunks: dict[str, ServedChunk], self_url: str, secret: bytes | None,
                 work_dir: str, on_start: Callable[[], Awaitable[None]] | None = None, *,
                 kill_grace: float = DEFAULT_KILL_GRACE, unpack: UnpackLimits | None = None,
                 identity: ServerIdentity | None = None, source: LoadSource | None = None,
                 virtual: VirtualLoad | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.node, self.chunks, self.self_url, self.secret = node, chunks, self_url, secret
        self.unpack = replace(unpack or UnpackLimits(), symlinks=True)
        self.identity = identity or ServerIdentity.new(f"node:{node}", secret)
        self.signer = Signer(secret)
        self.work_dir = work_dir
        self.exports = os.path.join(work_dir, "exports")
        self.on_start = on_start
        self.kill_grace = kill_grace
        self.running: dict[int, asyncio.subprocess.Process] = {}
        self.source = source or host_source(None)
        self.virtual = virtual or VirtualLoad()
        self.clock = clock
        self._claims: dict[str, float] = {}       # claim token -> when, until its run comes
        self._notes: set[asyncio.Task[None]] = set()
        self._note_waiting = False
        self._last_note = -DEFAULT_NOTIFY_INTERVAL
        os.makedirs(self.exports, exist_ok=True)
        sweep_staging(self.exports)
        os.makedirs(os.path.join(work_dir, "run"), exist_ok=True)
        self.mounts = RunMounts(node, chunks, self_url, self.signer, work_dir, self._export_dir)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/cpu/run", self._run),
                web.get("/v1/cpu/exports/{hash}", self._has_export),
                web.put("/v1/cpu/exports/{hash}", self._put_export),
                web.get("/v1/cpu/load", self._load), web.post("/v1/cpu/claim", self._claim)]

    async def close(self) -> None:
        """Kill running commands and close the HTTP client; idempotent."""
        for task in list(self._notes):
            task.cancel()
        await asyncio.gather(*self._notes, return_exceptions=True)
        for proc in list(self.running.values()):
            await self._kill(proc)
        await self.mounts.close()

    # -- exports ------------------------------------------------------------------------
    def _export_dir(self, digest: str) -> str:
        if not _HASH.match(digest):
            raise RunRefused(f"bad export hash {digest[:80]!r}")
        return os.path.join(self.exports, digest)

    async def _has_export(self, request: web.Request) -> web.Response:
        try:
            present = os.path.isdir(self._export_dir(request.match_info["hash"]))
        except RunRefused as exc:
            return web.json_response({"error": str(exc), "kind": "bad"}, status=400)
        return web.json_response({"present": present}, status=200 if present else 404)

    @body_limit(DEFAULT_MAX_EXPORT)
    async def _put_export(self, request: web.Request) -> web.Response:
        digest = request.match_info["hash"]
        # An archive's headers and padding come on top of the bytes it unpacks to.
        limit = 2 * self.unpack.max_bytes + (1 << 20) if self.unpack.max_bytes else DEFAULT_MAX_EXPORT
        try:
            dest = self._export_dir(digest)
            body = await read_bounded(request, limit)
            if body is None:
                raise RunRefused(f"larger than {limit} bytes")
            if hashlib.sha256(body).hexdigest() != digest:
                raise RunRefused("export does not match its hash")
            if not os.path.isdir(dest):
                tmp = f"{dest}.tmp-{secrets.token_hex(4)}"
                await asyncio.get_running_loop().run_in_executor(
                    None, extract, io.BytesIO(body), tmp, self.unpack)
                try:
                    os.rename(tmp, dest)
                except OSError:                      # another upload won the race
                    remove_tree(tmp)
        except (RunRefused, UnpackRefused) as exc:
            log.info("export %s refused: %s", digest[:12], exc)
            return web.json_response({"error": f"export refused: {exc}", "kind": "bad"}, status=400)
        return web.json_response({"ok": True})

    # -- load and claims (dsh's virtual load, shared by every client) ---------------------
    def load_doc(self, now: float) -> dict[str, Any]:
        """What `GET /v1/cpu/load` answers: the real load and the virtual load, apart."""
        facts = self.source()
        return {"node": self.node, "os": facts.os, "arch": facts.arch, "ncpu": facts.ncpu,
                "load": facts.load, "virtual": round(self.virtual.value(now), 4),
                "generation": self.virtual.generation, "running": len(self.running),
                "mem_free": facts.mem_free, "mem_total": facts.mem_total}

    def _count(self, now: float, claim: Any = None) -> None:
        """A dispatch was accepted: count it, unless its claim already did."""
        for token in [t for t, when in self._claims.items() if now - when >= DEFAULT_CLAIM_SECONDS]:
            del self._claims[token]                 # claims never used
        if isinstance(claim, str) and self._claims.pop(claim, None) is not None:
            return
        self.virtual = self.virtual.counted(now)
        self._notify()

    def _notify(self) -> None:
        """Tell `on_start` (the daemon: the registry) without holding up the caller: at once,
        or, within DEFAULT_NOTIFY_INTERVAL of the last telling, once at its end for every
        dispatch since (a loop of short runs sent one registry update per run)."""
        if self.on_start is None or self._note_waiting:
            return              # a telling still to come will tell the newest state
        self._note_waiting = True
        task = asyncio.get_running_loop().create_task(self._tell())
        self._notes.add(task)
        task.add_done_callback(self._notes.discard)

    async def _tell(self) -> None:
        assert self.on_start is not None
        loop = asyncio.get_running_loop()
        wait = self._last_note + DEFAULT_NOTIFY_INTERVAL - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._note_waiting = False               # dispatches from now on need another telling
        self._last_note = loop.time()
        await self.on_start()

    async def _load(self, request: web.Request) -> web.Response:
        return web.json_response(self.load_doc(self.clock()))

    @body_limit(DEFAULT_CLAIM_BODY)
    async def _claim(self, request: web.Request) -> web.Response:
        """`{"expect": GENERATION}`: count a dispatch if none came since that generation.

        200 `{"claimed": true, "claim": TOKEN, ...load}` (send TOKEN with the run, so it is
        not counted twice); 409 `{"claimed": false, ...load}`: choose again from this load.
        """
        try:
            expect = jsondoc.load_object(await request.read(), {"expect": jsondoc.INT}, what="claim")["expect"]
        except jsondoc.BadJSON:
            return web.json_response({"error": 'claim body must be {"expect": GENERATION}', "kind": "bad"},
                                     status=400)
        now = self.clock()                          # no await from here to the answer: atomic
        self.virtual, claimed = self.virtual.claim(expect, now)
        if not claimed:
            return web.json_response({"claimed": False, **self.load_doc(now)}, status=409)
        token = secrets.token_hex(8)
        self._claims[token] = now
        while len(self._claims) > DEFAULT_MAX_PENDING_CLAIMS:
            del self._claims[next(iter(self._claims))]
        self._notify()
        return web.json_response({"claimed": True, "claim": token, **self.load_doc(now)})

    # -- running ------------------------------------------------------------------------
    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is not None:
            return
        for sig, wait in ((signal.SIGTERM, self.kill_grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                await asyncio.wait_for(proc.wait(), wait)
                return
            except asyncio.TimeoutError:
                continue

    async def _run(self, request: web.Request) -> web.StreamResponse:
        raw = web.WebSocketResponse(max_msg_size=1 << 20, heartbeat=5.0)
        try:
            ws = await accept(request, raw, self.secret, self.identity, what=f"rcpu from {request.remote}")
        except ChannelRefused:
            return raw
        run_dir = os.path.join(self.work_dir, "run", secrets.token_hex(8))
        try:
            msg = await ws.receive(timeout=30)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RunRefused("bad run request")
            spec = jsondoc.load_object(msg.data, _RUN_REQUEST, what="run request")
            self._count(self.clock(), spec.get("claim"))     # counted the moment it is accepted
            ns = os.path.join(run_dir, "n")
            os.makedirs(ns)
            env = await self.mounts.mount(spec, ns)
            env.update({str(k): str(v) for k, v in (spec.get("env") or {}).items()})
            await self._execute(ws, spec["cmd"], run_dir, env)
        except (RunRefused, UnpackRefused, ValueError, asyncio.TimeoutError, OSError) as exc:
            log.info("run refused: %s", exc)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json({"op": "error", "error": str(exc) or type(exc).__name__})
        finally:
            await asyncio.get_running_loop().run_in_executor(None, remove_run_dir, run_dir)
            await ws.close()
        return raw

    async def _execute(self, ws: Channel, cmd: Any, cwd: str, env: dict[str, str]) -> None:
        try:
            argv = command_argv(cmd)
        except ValueError as exc:
            raise RunRefused(str(exc)) from exc
        # The daemon's environment is only passed on to the command, not read as settings.
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env={**os.environ, **env}, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        self.running[proc.pid] = proc
        log.info("run pid %d: %r", proc.pid, cmd)
        lock = asyncio.Lock()

        async def pump(stream: asyncio.StreamReader, tag: int) -> None:
            while block := await stream.read(64 * 1024):
                async with lock:
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.send_bytes(bytes([tag]) + block)

        async def listen() -> None:
            async for m in ws:                      # ends when the client goes away
                if m.type == aiohttp.WSMsgType.TEXT:
                    with contextlib.suppress(jsondoc.BadJSON):
                        if jsondoc.check(jsondoc.loads(m.data, what="message"), {}).get("op") == "kill":
                            break
            await self._kill(proc)

        try:
            await ws.send_json({"op": "started", "pid": proc.pid, "host": self.node})
            assert proc.stdout is not None and proc.stderr is not None
            listener = asyncio.create_task(listen())
            await asyncio.gather(pump(proc.stdout, STDOUT), pump(proc.stderr, STDERR))
            status = exit_status(await proc.wait())
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json({"op": "exit", "status": status})
        finally:
            await self._kill(proc)
            self.running.pop(proc.pid, None)
