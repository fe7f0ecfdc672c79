"""The job service: run MapReduce task attempts for a cluster job driver, serve their outputs.

Routes (signed with the cluster secret):
  GET  /v1/jobs/packs/{hash}         200 if the job pack is cached here, else 404 (packs are
                                     pruned least recently used first: `geryon.node.packcache`)
  PUT  /v1/jobs/packs/{hash}         the pack's bytes (checked against the hash, unpacked once)
  GET  /v1/jobs/run                  WebSocket: the attempt's request, then stderr frames and the result
  GET  /v1/jobs/{job}/hold           WebSocket held by the job's driver: when it closes, the job's
                                     intermediate data here is removed (the driver died or is done)
  GET  /v1/jobs/{job}/hold-output    WebSocket held by a multi-step job's driver on an intermediate
                                     step's id: when the last closes, that committed output goes too
                                     (after a grace: `geryon.node.heldoutputs`)
  GET  /v1/jobs/{job}/data/{name}    a map output or index (Range requests: the shuffle)
  POST /v1/jobs/{job}/commit         rename a reduce attempt's staged part to `JOB/part-0000r`
  POST /v1/jobs/{job}/success        write the job's `_SUCCESS` marker beside its parts here
  GET  /v1/jobs/outputs/{job}/{name} a committed part file (or `_SUCCESS`)
  DELETE /v1/jobs/{job}              stop the job's attempts here and remove its intermediate data
  DELETE /v1/jobs/{job}/output       remove the job's committed output here (`geryon rm JOB`)

Where outputs go: each attempt's request names its output disk (`out_chunk`), which the
driver chose among this host's `*.cpu` disks (the seed's rule, round robin); without one,
the node's work directory (`work/output`, served read-only as the chunk `_output` so a job's
output can be the next job's input). A node never picks a disk itself, so it never writes
into a chunk that holds a dataset; it refuses an `out_chunk` it serves as a replica. A
job's map outputs and staged parts live in the hidden `.geryon-tmp-<job>` directory of
that disk, committed parts in `<job>/part-0000r` (Hadoop's layout), job ids being unique
per run. Each attempt
is a `python -m geryon.node.worker` process in its own session (`geryon.node.attemptrun`),
killed when the driver's socket closes. Not here: deciding
what runs where, or which attempt counts (the driver decides; `geryon.mapreduce.engine`).
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
from typing import Any

import aiohttp
from aiohttp import web

from geryon.mapreduce.attempt import AttemptId
from geryon.disks.chunk import TEMP_MARK, TRASH_NAME, ChunkFS
from geryon.errors import GeryonError
from geryon.node.chunkservice import ServedChunk
from geryon.node.bodies import read_bounded
from geryon.records.untar import UnpackLimits, sweep_staging
from geryon.disks.outputs import OUTPUT_CHUNK, SUCCESS_NAME, part_name
from registry import jsondoc
from registry.auth import ServerIdentity, body_limit, signing_secret
from registry.channel import Channel, ChannelRefused, accept
from geryon.node.attemptrun import kill_worker, run_attempt, tls_ca
from geryon.node.packcache import DEFAULT_PACK_CACHE, PackCache
from geryon.node.heldoutputs import HeldOutputs
from geryon.defaults import DEFAULT_STEP_OUTPUT_GRACE

log = logging.getLogger(__name__)

DEFAULT_MAX_PACK = 1 << 30
"""Largest job pack accepted, in bytes (held in memory while it is unpacked)."""

# A run request's task: the fields this module reads (the worker checks the rest).
_TASK = {"kind": jsondoc.optional(jsondoc.STR), "index": jsondoc.optional(jsondoc.INT),
         "attempt": jsondoc.optional(jsondoc.INT), "sample": jsondoc.optional(jsondoc.INT),
         "step": jsondoc.optional(jsondoc.INT)}   # a multi-step job's step, in its pack

DEFAULT_DRIVER_HEARTBEAT = 2.0
"""Seconds between pings to a driver; one missed pong (half this) ends its attempts."""

_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,200}\Z")
_HASH = re.compile(r"[0-9a-f]{64}\Z")
_STAGED = re.compile(r"[A-Za-z0-9_.+-]+\.part[0-9]+\.a[0-9]+\Z")
_OUTPUT_FILE = re.compile(r"(part-[0-9]{5,}|_SUCCESS)\Z")


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message, "kind": "bad"}, status=status)


def staging_name(job_id: str) -> str:
    """The hidden directory of a job on a node's output disk."""
    return f"{TEMP_MARK}{job_id}"


class JobService:
    """Runs task attempts in worker processes.

    Args:
        node: this node's name.
        chunks: the chunks served here; the work directory's output is added as `_output`.
        self_url: this node's `http://addr:port`.
        secret: the cluster secret, handed to workers (on stdin) to sign their fetches.
        work_dir: the node's work directory (pack cache, results, outputs without a `*.cpu` disk).
        unpack: limits on what one job pack may unpack to.
        step_output_grace: seconds a multi-step job's intermediate output outlives its driver's hold.
    """

    def __init__(self, node: str, chunks: dict[str, ServedChunk], self_url: str, secret: bytes | None,
                 work_dir: str, *, driver_heartbeat: float = DEFAULT_DRIVER_HEARTBEAT,
                 unpack: UnpackLimits | None = None, identity: ServerIdentity | None = None,
                 pack_cache: int = DEFAULT_PACK_CACHE, step_output_grace: float = DEFAULT_STEP_OUTPUT_GRACE) -> None:
        self.node, self.chunks, self.self_url, self.secret = node, chunks, self_url, secret
        self.unpack = unpack or UnpackLimits()
        self.identity = identity or ServerIdentity.new(f"node:{node}", secret)
        self.work_dir = work_dir = os.path.abspath(work_dir)  # workers run elsewhere
        self.packs = os.path.join(work_dir, "packs")
        self.results = os.path.join(work_dir, "attempts")
        self.driver_heartbeat = driver_heartbeat
        self.out_root = os.path.join(work_dir, "output")
        for d in (self.packs, self.results, self.out_root):
            os.makedirs(d, exist_ok=True)
        if OUTPUT_CHUNK in chunks:
            raise GeryonError(f"disk name {OUTPUT_CHUNK} is reserved (this node's job outputs)")
        chunks[OUTPUT_CHUNK] = ServedChunk(OUTPUT_CHUNK, ChunkFS(self.out_root), replica=True)
        self.pack_cache = PackCache(self.packs, pack_cache)
        self.running: dict[int, tuple[str, asyncio.subprocess.Process]] = {}
        self.holds: dict[str, int] = {}
        self._sweep()
        self.held = HeldOutputs(os.path.join(work_dir, "held-outputs"), self._remove_committed, step_output_grace)
        with contextlib.suppress(RuntimeError):   # no loop yet: started by the first hold
            asyncio.get_running_loop()
            self.held.start()

    def _roots(self) -> list[str]:
        """Every directory a job may have written here: the writable chunks, then the work output."""
        roots = [c.fs.root_path for n, c in sorted(self.chunks.items()) if not c.replica]
        return roots + [self.out_root]

    def _out_root(self, chunk: str | None) -> tuple[str, str]:
        """(directory, disk name) of an attempt's output disk; raises ValueError if not served here."""
        if not chunk:
            return self.out_root, OUTPUT_CHUNK
        served = self.chunks.get(chunk)
        if served is None:
            raise ValueError(f"output disk {chunk} is not served by {self.node}")
        if served.replica:
            raise ValueError(f"output disk {chunk} is served read-only (a replica) by {self.node}")
        return served.fs.root_path, chunk

    def _sweep(self) -> None:
        """Remove job directories a previous life of this node left (it died mid-job).

        Safe: a driver that still counts on one of them finds the map output missing,
        and runs that map again, as when the node dies.
        """
        for root in self._roots():
            for name in os.listdir(root):
                path = os.path.join(root, name)
                if (name.startswith(TEMP_MARK) and name != TRASH_NAME and os.path.isdir(path)
                        and not os.path.islink(path)):         # the trash: the chunk service's sweep
                    log.info("removing %s, left by a job this node was running when it stopped", path)
                    shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.results, ignore_errors=True)
        os.makedirs(self.results, exist_ok=True)
        sweep_staging(self.packs)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/jobs/packs/{hash}", self._has_pack),
                web.put("/v1/jobs/packs/{hash}", self._put_pack),
                web.get("/v1/jobs/run", self._run),
                web.get("/v1/jobs/outputs/{job}/{name}", self._output),
                web.get("/v1/jobs/{job}/hold", self._hold),
                web.get("/v1/jobs/{job}/hold-output", self._hold_output),
                web.get("/v1/jobs/{job}/data/{name}", self._data),
                web.post("/v1/jobs/{job}/commit", self._commit),
                web.post("/v1/jobs/{job}/success", self._success),
                web.delete("/v1/jobs/{job}/output", self._remove_output),
                web.delete("/v1/jobs/{job}", self._forget)]

    async def close(self) -> None:
        """Kill every running attempt."""
        self.held.close()
        for _, proc in list(self.running.values()):
            await kill_worker(proc)

    def info(self) -> dict[str, Any]:
        """Where this node puts job outputs without a `*.cpu` disk."""
        return {"out_disk": OUTPUT_CHUNK, "out_root": self.out_root}

    # -- packs ----------------------------------------------------------------------------
    async def _has_pack(self, request: web.Request) -> web.Response:
        digest = request.match_info["hash"]
        if not _HASH.match(digest):
            return _bad("bad pack hash")
        present = self.pack_cache.has(digest)
        return web.json_response({"present": present}, status=200 if present else 404)

    @body_limit(DEFAULT_MAX_PACK)
    async def _put_pack(self, request: web.Request) -> web.Response:
        from geryon.mapreduce.jobpack import MAX_PACK, JobPackError

        digest = request.match_info["hash"]
        if not _HASH.match(digest):
            return _bad("bad pack hash")
        body = await read_bounded(request, MAX_PACK)
        if body is None:
            return _bad(f"job pack refused: larger than {MAX_PACK} bytes")
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.pack_cache.put, body, digest, self.unpack)
        except JobPackError as exc:
            log.info("pack %s refused: %s", digest[:12], exc)
            return _bad(str(exc))
        return web.json_response({"ok": True})

    # -- outputs --------------------------------------------------------------------------
    def _job(self, request: web.Request) -> str:
        job = request.match_info["job"]
        if not _SAFE.match(job):
            raise web.HTTPBadRequest(text=json.dumps({"error": "bad job id", "kind": "bad"}),
                                     content_type="application/json")
        return job

    def _find(self, job: str, name: str, staged: bool = True) -> str | None:
        """The file `name` of `job` here (in its staging directory, or its committed output)."""
        sub = staging_name(job) if staged else job
        for root in self._roots():
            path = os.path.join(root, sub, name)
            if os.path.isfile(path) and not os.path.islink(path):   # never a link out of the disk
                return path
        return None

    async def _data(self, request: web.Request) -> web.StreamResponse:
        job, name = self._job(request), request.match_info["name"]
        if not _SAFE.match(name):
            return _bad("bad file name")
        path = self._find(job, name)
        if path is None:
            return _bad(f"no map output {name} here", 404)
        return web.FileResponse(path, chunk_size=1 << 20)

    async def _output(self, request: web.Request) -> web.StreamResponse:
        job, name = self._job(request), request.match_info["name"]
        if not _OUTPUT_FILE.match(name):
            return _bad("bad part name")
        path = self._find(job, name, staged=False)
        if path is None:
            return _bad(f"no {job}/{name} here", 404)
        return web.FileResponse(path, chunk_size=1 << 20)

    async def _commit(self, request: web.Request) -> web.Response:
        job = self._job(request)
        try:
            body = jsondoc.load_object(await request.read(), {"staged": jsondoc.STR, "partition": jsondoc.INT},
                                       what="commit request")
            staged, r = body["staged"], body["partition"]
        except ValueError:
            return _bad("bad commit request")
        if not _STAGED.match(staged) or r < 0:
            return _bad("bad part names")
        src = self._find(job, staged)
        if src is None:
            return _bad(f"no staged part {staged} here", 404)
        root = os.path.dirname(os.path.dirname(src))
        final = f"{job}/{part_name(r)}"
        dst = os.path.join(root, final)
        if os.path.isdir(dst):
            return _bad(f"cannot commit {final}: a directory has that name", 409)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.replace(src, dst)
        disk = next((n for n, c in self.chunks.items() if not c.replica and c.fs.root_path == root), OUTPUT_CHUNK)
        return web.json_response({"ok": True, "part": final, "size": os.path.getsize(dst), "disk": disk})

    async def _success(self, request: web.Request) -> web.Response:
        job = self._job(request)
        data = await request.read()
        written = []
        for root in self._roots():
            out = os.path.join(root, job)
            if os.path.isdir(out) and not os.path.islink(out):
                tmp = os.path.join(out, f"{TEMP_MARK}{SUCCESS_NAME}")
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, os.path.join(out, SUCCESS_NAME))
                written.append(out)
        return web.json_response({"ok": True, "written": len(written)})

    async def _remove_output(self, request: web.Request) -> web.Response:
        job = self._job(request)
        removed = await self._remove_committed(job)
        self.held.forget(job)
        return web.json_response({"ok": True, "removed": removed})

    async def _remove_committed(self, job: str) -> int:
        """Remove `job`'s committed output directories here (and its intermediate data); how many."""
        removed = 0
        loop = asyncio.get_running_loop()
        for root in self._roots():
            out = os.path.join(root, job)
            if os.path.isdir(out) and not os.path.islink(out) and all(
                    _OUTPUT_FILE.match(n) or TEMP_MARK in n for n in os.listdir(out)):
                await loop.run_in_executor(None, shutil.rmtree, out, True)
                removed += 1
        await self._clean(job)
        return removed

    async def _clean(self, job: str) -> None:
        """Stop `job`'s attempts here and remove its intermediate data (never its committed parts)."""
        for pid, (owner, proc) in list(self.running.items()):
            if owner == job:
                await kill_worker(proc)
        loop = asyncio.get_running_loop()
        for root in self._roots():
            await loop.run_in_executor(None, shutil.rmtree, os.path.join(root, staging_name(job)), True)
        await loop.run_in_executor(None, shutil.rmtree, os.path.join(self.results, job), True)

    async def _forget(self, request: web.Request) -> web.Response:
        await self._clean(self._job(request))
        return web.json_response({"ok": True})

    async def _hold(self, request: web.Request) -> web.StreamResponse:
        """The driver's hold on a job: the job's intermediate data lives while one is open."""
        job = self._job(request)
        raw = web.WebSocketResponse(heartbeat=self.driver_heartbeat)
        try:
            ws = await accept(request, raw, self.secret, self.identity, what=f"job hold from {request.remote}")
        except ChannelRefused:
            return raw
        self.holds[job] = self.holds.get(job, 0) + 1
        try:
            async for _ in ws:           # ends when the driver goes away (or closes it when done)
                pass
        finally:
            self.holds[job] -= 1
            if not self.holds[job]:
                del self.holds[job]
                log.info("driver of %s gone: removing its intermediate data", job)
                await self._clean(job)
        return raw

    async def _hold_output(self, request: web.Request) -> web.StreamResponse:
        """A multi-step job's driver holds an intermediate step's committed output here."""
        job = self._job(request)
        raw = web.WebSocketResponse(heartbeat=self.driver_heartbeat)
        try:
            ws = await accept(request, raw, self.secret, self.identity, what=f"output hold from {request.remote}")
        except ChannelRefused:
            return raw
        self.held.opened(job)
        try:
            async for _ in ws:           # ends when the driver goes away (or closes it when done)
                pass
        finally:
            self.held.closed(job)
        return raw

    # -- attempts -------------------------------------------------------------------------
    async def _run(self, request: web.Request) -> web.StreamResponse:
        raw = web.WebSocketResponse(max_msg_size=64 << 20, heartbeat=self.driver_heartbeat)
        try:
            ws = await accept(request, raw, self.secret, self.identity, what=f"job attempt from {request.remote}")
        except ChannelRefused:
            return raw
        try:
            msg = await ws.receive(timeout=30)
            req = (jsondoc.loads(msg.data, what="run request", max_bytes=64 << 20)
                   if msg.type == aiohttp.WSMsgType.TEXT else None)
            if not isinstance(req, dict):
                raise ValueError("bad run request")
            job, digest, task = str(req.get("job", "")), str(req.get("pack", "")), req.get("task")
            if not _SAFE.match(job) or not _HASH.match(digest) or not isinstance(task, dict):
                raise ValueError("bad run request")
            jsondoc.check(task, _TASK, what="task")
            with self.pack_cache.using(digest) as pack:
                if not os.path.isdir(pack):
                    raise ValueError("job pack not on this node (upload it first)")
                root, disk = self._out_root(req.get("out_chunk"))
                await self._attempt(ws, job, pack, task, root)
        except (ValueError, asyncio.TimeoutError, OSError) as exc:
            log.info("task refused: %s", exc)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json({"op": "error", "error": str(exc) or type(exc).__name__})
        finally:
            await ws.close()
        return raw

    async def _attempt(self, ws: Channel, job: str, pack: str, task: dict[str, Any], out_root: str) -> None:
        results = os.path.join(self.results, job)
        os.makedirs(results, exist_ok=True)
        os.makedirs(os.path.join(out_root, staging_name(job)), exist_ok=True)
        aid = AttemptId.of_json(task)
        tid = str(aid)
        result_path = os.path.join(results, f"{tid}.{secrets.token_hex(4)}.json")
        spec = {"job": job, "pack": pack, "task": task, "out_root": out_root,
                "staging": staging_name(job), "self_url": self.self_url,
                "job_dirs": [os.path.join(r, staging_name(job)) for r in self._roots()],
                "chunks": {n: c.fs.root_path for n, c in self.chunks.items()},
                "secret": signing_secret(self.secret).hex() if self.secret is not None else None,
                "tls_ca": tls_ca(), "result": result_path}
        await run_attempt(ws, spec, aid, self.node, results, self.running)
