"""The job service: run MapReduce task attempts for a cluster job driver, serve their outputs.

Routes (signed with the cluster secret):
  GET  /v1/jobs/packs/{hash}         200 if the job pack is cached here, else 404
  PUT  /v1/jobs/packs/{hash}         the pack's bytes (checked against the hash, unpacked once)
  GET  /v1/jobs/run                  WebSocket: the attempt's request, then stderr frames and the result
  GET  /v1/jobs/{job}/data/{name}    a map output or index (Range requests: the shuffle)
  POST /v1/jobs/{job}/commit         rename a reduce attempt's staged part to its final name
  GET  /v1/jobs/outputs/{name}       a committed part file
  DELETE /v1/jobs/{job}              stop the job's attempts here and remove its intermediate data

Where outputs go: the node's output disk is its first writable chunk (else `work/output`);
a job's map outputs and staged parts live in the hidden `.geryon-tmp-<job>` directory of
that disk, committed parts are `<name>.part<r>` at its top, like the seed's. Each attempt
is a `python -m geryon.worker` process in its own session; its stdout and stderr travel
to the driver as binary frames (`\\x02` + bytes), then one text frame
`{"op": "result", "result": {...}}`. When the driver's socket closes (the driver died, or
it gave the attempt up because this node missed its lease) the attempt is killed: a
paused node that wakes up cannot deliver a result anyone will use. Not here: deciding
what runs where, or which attempt counts (the driver decides; `geryon.cluster`).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import sys
from collections import deque
from typing import Any

import aiohttp
from aiohttp import web

from geryon.chunk import TEMP_MARK
from geryon.node.chunkservice import ServedChunk
from geryon.node.bodies import read_bounded
from geryon.untar import UnpackLimits, sweep_staging
from registry.auth import ServerIdentity, body_limit
from registry.channel import Channel, ChannelRefused, accept

log = logging.getLogger(__name__)

DEFAULT_MAX_PACK = 1 << 30
"""Largest job pack accepted, in bytes (held in memory while it is unpacked)."""

DEFAULT_DRIVER_HEARTBEAT = 2.0
"""Seconds between pings to a driver; one missed pong (half this) ends its attempts."""

STDERR_TAIL = 30
"""Lines of an attempt's stderr kept for its failure message."""

_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,200}\Z")
_HASH = re.compile(r"[0-9a-f]{64}\Z")
_STAGED = re.compile(r"[A-Za-z0-9_.+-]+\.part[0-9]+\.a[0-9]+\Z")
_FINAL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\.part[0-9]+\Z")


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message, "kind": "bad"}, status=status)


def staging_name(job_id: str) -> str:
    """The hidden directory of a job on a node's output disk."""
    return f"{TEMP_MARK}{job_id}"


class JobService:
    """Runs task attempts in worker processes.

    Args:
        node: this node's name.
        chunks: the chunks served here (the first writable one holds job outputs).
        self_url: this node's `http://addr:port`.
        secret: the cluster secret, handed to workers (on stdin) to sign their fetches.
        work_dir: the node's work directory (pack cache, results).
        unpack: limits on what one job pack may unpack to.
    """

    def __init__(self, node: str, chunks: dict[str, ServedChunk], self_url: str, secret: bytes | None,
                 work_dir: str, *, driver_heartbeat: float = DEFAULT_DRIVER_HEARTBEAT,
                 unpack: UnpackLimits | None = None, identity: ServerIdentity | None = None) -> None:
        self.node, self.chunks, self.self_url, self.secret = node, chunks, self_url, secret
        self.unpack = unpack or UnpackLimits()
        self.identity = identity or ServerIdentity.new(f"node:{node}", secret)
        self.work_dir = work_dir = os.path.abspath(work_dir)  # workers run elsewhere
        self.packs = os.path.join(work_dir, "packs")
        self.results = os.path.join(work_dir, "attempts")
        self.driver_heartbeat = driver_heartbeat
        writable = [c for _, c in sorted(chunks.items()) if not c.replica]
        self.out_root = writable[0].fs.root_path if writable else os.path.join(work_dir, "output")
        self.out_disk = writable[0].name if writable else ""
        for d in (self.packs, self.results, self.out_root):
            os.makedirs(d, exist_ok=True)
        self.running: dict[int, tuple[str, asyncio.subprocess.Process]] = {}
        self._sweep()

    def _sweep(self) -> None:
        """Remove job directories a previous life of this node left (it died mid-job).

        Safe: a driver that still counts on one of them finds the map output missing,
        and runs that map again, as when the node dies.
        """
        for name in os.listdir(self.out_root):
            path = os.path.join(self.out_root, name)
            if name.startswith(TEMP_MARK) and os.path.isdir(path) and not os.path.islink(path):
                log.info("removing %s, left by a job this node was running when it stopped", path)
                shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.results, ignore_errors=True)
        os.makedirs(self.results, exist_ok=True)
        sweep_staging(self.packs)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/jobs/packs/{hash}", self._has_pack),
                web.put("/v1/jobs/packs/{hash}", self._put_pack),
                web.get("/v1/jobs/run", self._run),
                web.get("/v1/jobs/outputs/{name}", self._output),
                web.get("/v1/jobs/{job}/data/{name}", self._data),
                web.post("/v1/jobs/{job}/commit", self._commit),
                web.delete("/v1/jobs/{job}", self._forget)]

    async def close(self) -> None:
        """Kill every running attempt."""
        for _, proc in list(self.running.values()):
            await _kill(proc)

    def info(self) -> dict[str, Any]:
        """What the driver needs to know about this node's output disk."""
        return {"out_disk": self.out_disk, "out_root": self.out_root}

    # -- packs ----------------------------------------------------------------------------
    async def _has_pack(self, request: web.Request) -> web.Response:
        digest = request.match_info["hash"]
        if not _HASH.match(digest):
            return _bad("bad pack hash")
        present = os.path.isdir(os.path.join(self.packs, digest))
        return web.json_response({"present": present}, status=200 if present else 404)

    @body_limit(DEFAULT_MAX_PACK)
    async def _put_pack(self, request: web.Request) -> web.Response:
        from geryon.jobpack import MAX_PACK, JobPackError, unpack

        digest = request.match_info["hash"]
        if not _HASH.match(digest):
            return _bad("bad pack hash")
        body = await read_bounded(request, MAX_PACK)
        if body is None:
            return _bad(f"job pack refused: larger than {MAX_PACK} bytes")
        try:
            await asyncio.get_running_loop().run_in_executor(None, unpack, body, self.packs, digest, self.unpack)
        except JobPackError as exc:
            log.info("pack %s refused: %s", digest[:12], exc)
            return _bad(str(exc))
        return web.json_response({"ok": True})

    # -- outputs --------------------------------------------------------------------------
    def _job_dir(self, job: str) -> str:
        if not _SAFE.match(job):
            raise web.HTTPBadRequest(text=json.dumps({"error": "bad job id", "kind": "bad"}),
                                     content_type="application/json")
        return os.path.join(self.out_root, staging_name(job))

    async def _data(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not _SAFE.match(name):
            return _bad("bad file name")
        path = os.path.join(self._job_dir(request.match_info["job"]), name)
        if not os.path.isfile(path) or os.path.islink(path):
            return _bad(f"no map output {name} here", 404)
        return web.FileResponse(path, chunk_size=1 << 20)

    async def _output(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not _FINAL.match(name):
            return _bad("bad part name")
        path = os.path.join(self.out_root, name)
        if not os.path.isfile(path) or os.path.islink(path):
            return _bad(f"no part {name} here", 404)
        return web.FileResponse(path, chunk_size=1 << 20)

    async def _commit(self, request: web.Request) -> web.Response:
        job_dir = self._job_dir(request.match_info["job"])
        try:
            body = await request.json()
            staged, final = str(body["staged"]), str(body["final"])
        except (ValueError, KeyError, TypeError):
            return _bad("bad commit request")
        if not _STAGED.match(staged) or not _FINAL.match(final):
            return _bad("bad part names")
        src, dst = os.path.join(job_dir, staged), os.path.join(self.out_root, final)
        if not os.path.isfile(src):
            return _bad(f"no staged part {staged} here", 404)
        if os.path.isdir(dst):
            return _bad(f"cannot commit {final}: a directory has that name", 409)
        os.replace(src, dst)
        return web.json_response({"ok": True, "part": final, "size": os.path.getsize(dst),
                                  "disk": self.out_disk})

    async def _forget(self, request: web.Request) -> web.Response:
        job = request.match_info["job"]
        job_dir = self._job_dir(job)
        for pid, (owner, proc) in list(self.running.items()):
            if owner == job:
                await _kill(proc)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, shutil.rmtree, job_dir, True)
        await loop.run_in_executor(None, shutil.rmtree, os.path.join(self.results, job), True)
        return web.json_response({"ok": True})

    # -- attempts -------------------------------------------------------------------------
    async def _run(self, request: web.Request) -> web.StreamResponse:
        raw = web.WebSocketResponse(max_msg_size=64 << 20, heartbeat=self.driver_heartbeat)
        try:
            ws = await accept(request, raw, self.secret, self.identity, what=f"job attempt from {request.remote}")
        except ChannelRefused:
            return raw
        try:
            msg = await ws.receive(timeout=30)
            req = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else None
            if not isinstance(req, dict):
                raise ValueError("bad run request")
            job, digest, task = str(req.get("job", "")), str(req.get("pack", "")), req.get("task")
            if not _SAFE.match(job) or not _HASH.match(digest) or not isinstance(task, dict):
                raise ValueError("bad run request")
            pack = os.path.join(self.packs, digest)
            if not os.path.isdir(pack):
                raise ValueError("job pack not on this node (upload it first)")
            await self._attempt(ws, job, pack, task)
        except (ValueError, asyncio.TimeoutError, OSError) as exc:
            log.info("task refused: %s", exc)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json({"op": "error", "error": str(exc) or type(exc).__name__})
        finally:
            await ws.close()
        return raw

    async def _attempt(self, ws: Channel, job: str, pack: str, task: dict[str, Any]) -> None:
        results = os.path.join(self.results, job)
        os.makedirs(results, exist_ok=True)
        os.makedirs(self._job_dir(job), exist_ok=True)
        tid = f"{'m' if task.get('kind') == 'map' else 'r'}{int(task.get('index', 0))}.a{int(task.get('attempt', 0))}"
        result_path = os.path.join(results, f"{tid}.{secrets.token_hex(4)}.json")
        spec = {"job": job, "pack": pack, "task": task, "out_root": self.out_root,
                "staging": staging_name(job), "self_url": self.self_url,
                "chunks": {n: c.fs.root_path for n, c in self.chunks.items()},
                "secret": self.secret.hex() if self.secret is not None else None, "result": result_path}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "geryon.worker", job, tid, cwd=results, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        self.running[proc.pid] = (job, proc)
        tail: deque[str] = deque(maxlen=STDERR_TAIL)
        lock = asyncio.Lock()
        try:
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            proc.stdin.write(json.dumps(spec).encode())
            await proc.stdin.drain()
            proc.stdin.close()
            await ws.send_json({"op": "started", "pid": proc.pid, "node": self.node})

            async def pump(stream: asyncio.StreamReader) -> None:
                while line := await stream.readline():
                    tail.append(line.decode(errors="replace").rstrip("\n"))
                    async with lock:
                        with contextlib.suppress(ConnectionError, RuntimeError):
                            await ws.send_bytes(b"\x02" + line)

            async def watch() -> None:
                async for _ in ws:           # ends when the driver goes away
                    pass

            pumps = asyncio.gather(pump(proc.stdout), pump(proc.stderr))
            watcher = asyncio.create_task(watch())
            done, _ = await asyncio.wait({asyncio.ensure_future(pumps), watcher},
                                         return_when=asyncio.FIRST_COMPLETED)
            if watcher in done:               # the driver is gone: nobody wants this attempt
                log.info("driver left: killing %s of %s", tid, job)
                await _kill(proc)
                pumps.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pumps
                return
            status = await proc.wait()
            result = _read_result(result_path)
            if result is None:
                sig = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
                result = {"task": tid.split(".")[0], "attempt": int(task.get("attempt", 0)), "ok": False,
                          "error": f"task {tid} on {self.node}: worker {sig}", "error_kind": "system",
                          "detail": "\n".join(tail)}
            await ws.send_json({"op": "result", "result": result})
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        finally:
            await _kill(proc)
            self.running.pop(proc.pid, None)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(result_path)


def _read_result(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), 2.0)
            return
        except asyncio.TimeoutError:
            continue
