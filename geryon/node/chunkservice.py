"""The chunk service: a node's chunk disks over HTTP, the `fs` primitives as JSON calls.

Routes (all signed with the cluster secret; see `registry.auth`):
  GET    /v1/chunks                        the chunks served, with capacity and free space
  POST   /v1/chunks                        {"capacity": N, "claim": bool} -> a new chunk from the pool
  DELETE /v1/chunks/{chunk}                remove a chunk made from the pool
  POST   /v1/chunks/{chunk}/op             {"op": NAME, "args": {...}} -> {"result": ...}
  GET    /v1/chunks/{chunk}/file?path=P    the bytes (Range honoured, sendfile for the body)
  PUT    /v1/chunks/{chunk}/file?path=P    replace (or `&exclusive=1` create) a file, streamed
  PUT    /v1/chunks/{chunk}/files          many whole files in one body (`geryon.disks.filebatch`), all or none
  GET    /v1/chunks/{chunk}/archive        the whole chunk as an uncompressed tar stream

Every path is checked to stay inside its chunk (`../` and symlinks out are refused, 403;
listings, `files`, `sums`, `check` and `archive` skip symlinks out)
and each op runs in a worker thread (`geryon.node.chunkops`, which also says what the ops
do); here a refusal becomes its status (403, 404, 409, 507, 400). Replica chunks refuse
writes. `fs` errors travel by class name (`ResourceNotFound`) and are rebuilt by
`geryon.disks.remote`. Not here: what an op does to a chunk (`geryon.node.chunkops`), serving
cpus, registering anything, deciding what to copy (`geryon.disks.replicate`), the pool's
bookkeeping (`geryon.disks.allocate.ChunkPool`).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import stat
import tarfile
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from fs import errors as fserrors

from geryon.disks.checksum import ChecksumMismatch
from geryon.disks.chunk import ChunkFS, is_internal, within
from geryon.errors import DiskFull, GeryonError
from geryon.node.chunkops import (CLAIM_OPS, DEFAULT_CLAIM_LEASE, DEFAULT_PULL_TIMEOUT, PULL_DIR, READ_OPS, SYNC_OPS,
                                  USAGE_MIN_AGE, USAGE_WALK_FACTOR, WRITE_OPS, PathEscapes, PullMismatch, ServedChunk,
                                  StreamedWrite, _inside, _keep_manifest, _run_op, _sync_op, claim_expired, drop_claim,
                                  safe_path, write_claim)
from geryon.disks.filebatch import DEFAULT_BATCH_BODY, BatchError, parse_batch
from geryon.node.batchwrite import write_batch
from geryon.node.trash import Trash
from registry.auth import AuthenticationFailed, BodyDigest, body_limit, refusal, streamed
from registry import jsondoc

if TYPE_CHECKING:
    from geryon.disks.allocate import ChunkPool

__all__ = [
    "DEFAULT_ARCHIVE_BLOCK", "DEFAULT_SMALL_FILE", "ChunkService",
    # re-exported from geryon.node.chunkops
    "CLAIM_OPS", "DEFAULT_CLAIM_LEASE", "DEFAULT_PULL_TIMEOUT", "PULL_DIR", "READ_OPS", "SYNC_OPS", "USAGE_MIN_AGE", "USAGE_WALK_FACTOR", "WRITE_OPS",
    "PathEscapes", "PullMismatch", "ServedChunk", "safe_path",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_OP = 64 << 20
"""Largest chunk op request (JSON; a manifest of a chunk's files is the biggest), in bytes."""

# The shapes of the JSON requests (registry.jsondoc checks them).
_CREATE = {"capacity": jsondoc.INT, "name": jsondoc.optional(jsondoc.STR)}
_OP = {"op": jsondoc.STR, "args": jsondoc.optional(jsondoc.OBJECT)}

DEFAULT_SMALL_FILE = 64 << 10
"""Files up to this size are read and sent in one piece; larger ones go by sendfile."""

DEFAULT_ARCHIVE_BLOCK = 1 << 20
"""Bytes per write when streaming a chunk as tar."""

DEFAULT_UPLOAD_BLOCK = 1 << 20
"""Bytes gathered from an upload before each write to the chunk."""


def _fs_error(exc: fserrors.FSError, status: int = 400) -> web.Response:
    status = {"ResourceNotFound": 404, "ResourceReadOnly": 403, "PermissionDenied": 403}.get(
        type(exc).__name__, status)
    return web.json_response({"error": str(exc), "kind": "fs", "fserror": type(exc).__name__,
                              "path": getattr(exc, "path", None)}, status=status)


def _refusal(exc: Exception) -> web.Response:
    if isinstance(exc, PathEscapes):
        return web.json_response({"error": str(exc), "kind": "escape"}, status=403)
    if isinstance(exc, DiskFull):
        return web.json_response({"error": str(exc), "kind": "full"}, status=507)
    if isinstance(exc, fserrors.FSError):
        return _fs_error(exc)
    if isinstance(exc, ChecksumMismatch | PullMismatch):
        return web.json_response({"error": str(exc), "kind": "mismatch"}, status=409)
    if isinstance(exc, KeyError):
        return web.json_response({"error": f"bad request: missing {exc}", "kind": "bad"}, status=400)
    return web.json_response({"error": str(exc), "kind": "bad"}, status=400)


class ChunkService:
    """The routes serving `chunks` (name -> ServedChunk).

    Args:
        secret: signs this node's requests to others (pulling a file for a replica).
        pool: where new chunks are made on request (None: this node makes none).
        on_change: awaited after a chunk is made or deleted (the daemon re-registers).
        claim_lease: seconds a load's claim on a chunk lasts unrenewed (`reclaim`).
        named: whether the registry names a disk on this chunk (True, False, None: cannot
            tell now); a named chunk is kept when its claim runs out.
        clock: wall-clock seconds (claims survive restarts).
    """

    def __init__(self, chunks: dict[str, ServedChunk], *, secret: bytes | None = None,
                 pool: ChunkPool | None = None, on_change: Callable[[], Awaitable[None]] | None = None,
                 claim_lease: float = DEFAULT_CLAIM_LEASE, clock: Callable[[], float] = time.time,
                 named: Callable[[str], Awaitable[bool | None]] | None = None) -> None:
        self.chunks = chunks
        self.secret = secret
        self.pool = pool
        self.on_change = on_change
        self.claim_lease = claim_lease
        self.named = named
        self.clock = clock
        self.trash = Trash()                     # emptied chunks' files, deleted in the background
        self.trash.sweep(list(chunks.values()))  # what a previous life of this node was deleting

    def close(self) -> None:
        """Stop deleting trash (what is left is swept at the next start)."""
        self.trash.close()

    async def reclaim(self) -> list[str]:
        """Take back the chunks whose load died (its claim ran out): a pool chunk is
        deleted, any other emptied and made writable, a free chunk again."""
        now = self.clock()
        gone = []
        for name, chunk in list(self.chunks.items()):
            if not await self._blocking(claim_expired, chunk, now):
                continue
            named = await self.named(name) if self.named is not None else False
            if named is None:
                continue                            # the registry cannot tell now: ask again later
            if named:
                # Its load named it, then died before dropping the claim: the chunk is a disk.
                log.info("chunk %s is named by the registry: keeping it (its claim ran out)", name)
                await self._blocking(drop_claim, chunk)
                continue
            log.warning("reclaiming chunk %s: the load that claimed it stopped renewing its claim", name)
            if chunk.pooled and self.pool is not None:
                self.chunks.pop(name, None)
                await self._blocking(self.pool.delete, name)
            else:
                await self._blocking(_sync_op, chunk, "clear", {}, self.secret, self.pool, self.trash)
                await self._blocking(_sync_op, chunk, "role", {"replica": False}, self.secret, self.pool)
                await self._blocking(drop_claim, chunk)
            gone.append(name)
        if gone and self.on_change is not None:
            await self.on_change()
        return gone

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/chunks", self._list),
                web.post("/v1/chunks", self._create),
                web.delete("/v1/chunks/{chunk}", self._delete),
                web.post("/v1/chunks/{chunk}/op", self._op),
                web.get("/v1/chunks/{chunk}/file", self._read),
                web.put("/v1/chunks/{chunk}/file", self._write),
                web.put("/v1/chunks/{chunk}/files", self._write_batch),
                web.get("/v1/chunks/{chunk}/archive", self._archive)]

    def _chunk(self, request: web.Request) -> ServedChunk:
        name = request.match_info["chunk"]
        chunk = self.chunks.get(name)
        if chunk is None:
            raise web.HTTPNotFound(text=f'{{"error": "no chunk {name}", "kind": "nochunk"}}',
                                   content_type="application/json")
        return chunk

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))

    async def _list(self, request: web.Request) -> web.Response:
        out = {name: await self._blocking(c.usage) for name, c in list(self.chunks.items())}
        pool = None
        if self.pool is not None:
            pool = {"size": self.pool.size, "room": await self._blocking(self.pool.room)}
        return web.json_response({"chunks": out, "pool": pool})

    async def _create(self, request: web.Request) -> web.Response:
        if self.pool is None:
            return web.json_response({"error": "this node has no chunk pool (start it with --chunk-pool DIR)",
                                      "kind": "nopool"}, status=404)
        try:
            doc = jsondoc.load_object(await request.read(), _CREATE)
            capacity, replica, claim = doc["capacity"], bool(doc.get("replica")), bool(doc.get("claim"))
            name = doc.get("name")
        except ValueError:
            return web.json_response({"error": "bad request: want {\"capacity\": BYTES}", "kind": "bad"}, status=400)
        try:
            name, path = await self._blocking(self.pool.create, capacity, name, replica, frozenset(self.chunks))
        except DiskFull as exc:
            return _refusal(exc)
        except GeryonError as exc:
            return web.json_response({"error": str(exc), "kind": "bad"}, status=400)
        served = ServedChunk(name, ChunkFS(path), replica, pooled=True)
        result: dict[str, Any] = {"chunk": name, "capacity": capacity, "replica": replica}
        if claim:                                  # a load's: reclaimed unless it is renewed
            result.update(await self._blocking(write_claim, served, self.claim_lease, self.clock()))
        self.chunks[name] = served
        log.info("made chunk %s (%d bytes) from the pool", name, capacity)
        if self.on_change is not None:
            await self.on_change()
        return web.json_response({"result": result}, status=201)

    async def _delete(self, request: web.Request) -> web.Response:
        chunk = self._chunk(request)
        if not chunk.pooled or self.pool is None:
            return _fs_error(fserrors.ResourceReadOnly("/"))
        del self.chunks[chunk.name]
        await self._blocking(self.pool.delete, chunk.name)
        log.info("deleted chunk %s", chunk.name)
        if self.on_change is not None:
            await self.on_change()
        return web.json_response({"result": None})

    async def _op(self, request: web.Request) -> web.Response:
        chunk = self._chunk(request)
        try:
            doc = jsondoc.load_object(await request.read(), _OP, max_bytes=DEFAULT_MAX_OP)
            op, args = doc["op"], dict(doc.get("args") or {})
        except ValueError as exc:
            return web.json_response({"error": str(exc), "kind": "bad"}, status=400)
        if op in CLAIM_OPS:
            if args.get("done"):
                await self._blocking(drop_claim, chunk)
                return web.json_response({"result": None})
            return web.json_response({"result": await self._blocking(write_claim, chunk, self.claim_lease,
                                                                     self.clock())})
        if op not in READ_OPS | WRITE_OPS | SYNC_OPS:
            return web.json_response({"error": f"unknown op {op[:32]!r}", "kind": "bad"}, status=400)
        if chunk.replica and op in WRITE_OPS:
            return _fs_error(fserrors.ResourceReadOnly(str(args.get("path", args.get("dst", "/")))))
        try:
            if op in SYNC_OPS:
                result = await self._blocking(_sync_op, chunk, op, args, self.secret, self.pool, self.trash)
            else:
                result = await self._blocking(_run_op, chunk, op, args)
                if op in WRITE_OPS and op not in ("checkwrite", "makedir", "setinfo"):
                    await self._blocking(_keep_manifest, chunk, op, args)
        except (fserrors.FSError, PathEscapes, DiskFull, ValueError, KeyError, TypeError, OSError,
                GeryonError) as exc:
            return _refusal(exc)
        return web.json_response({"result": result})

    async def _read(self, request: web.Request) -> web.StreamResponse:
        chunk = self._chunk(request)
        try:
            path = safe_path(request.query.get("path", ""))
            sys_path = _inside(chunk, path)
            if is_internal(os.path.basename(path)):
                raise fserrors.ResourceNotFound(path)
        except (PathEscapes, fserrors.FSError) as exc:
            return _refusal(exc)
        try:
            st = os.stat(sys_path)
        except OSError:
            return _fs_error(fserrors.ResourceNotFound(path))
        if stat.S_ISDIR(st.st_mode):
            return _fs_error(fserrors.FileExpected(path))
        if not stat.S_ISREG(st.st_mode):
            return _fs_error(fserrors.ResourceNotFound(path))
        if st.st_size <= DEFAULT_SMALL_FILE and "Range" not in request.headers:
            # Small whole files: one read beats FileResponse's executor round trips.
            try:
                with open(sys_path, "rb") as f:
                    data = f.read()
            except OSError:
                return _fs_error(fserrors.ResourceNotFound(path))
            return web.Response(body=data, content_type="application/octet-stream")
        # FileResponse answers Range requests and sends the body with sendfile(2).
        return web.FileResponse(sys_path, chunk_size=256 * 1024,
                                headers={"Content-Type": "application/octet-stream"})

    @streamed
    async def _write(self, request: web.Request) -> web.Response:
        chunk = self._chunk(request)
        try:
            path = safe_path(request.query.get("path", ""))
            _inside(chunk, os.path.dirname(path) or "/")
        except (PathEscapes, fserrors.FSError) as exc:
            return _refusal(exc)
        if chunk.replica:
            return _fs_error(fserrors.ResourceReadOnly(path))
        # Streamed to a temporary file in the chunk, checked against the signed digest, and
        # only then put in place: a refusal part way leaves nothing (and held one block).
        check = BodyDigest.of(request.headers)
        try:
            upload = await self._blocking(StreamedWrite, chunk, path, request.query.get("exclusive") == "1")
        except (fserrors.FSError, DiskFull) as exc:
            return _refusal(exc)
        try:
            block = bytearray()
            while True:
                data = await request.content.readany()
                block += data
                if len(block) >= DEFAULT_UPLOAD_BLOCK or (not data and block):
                    check.update(block)
                    await self._blocking(upload.write, bytes(block))
                    block.clear()
                if not data:
                    break
            check.verify()
        except AuthenticationFailed as exc:
            await self._blocking(upload.abort)
            log.warning("refused upload of %s to %s from %s: %s", path, chunk.name, request.remote, exc)
            return refusal(exc)
        except (fserrors.FSError, DiskFull) as exc:
            await self._blocking(upload.abort)
            return _refusal(exc)
        except BaseException:
            await self._blocking(upload.abort)
            raise
        try:
            await self._blocking(upload.commit)
        except (fserrors.FSError, DiskFull) as exc:
            return _refusal(exc)
        return web.json_response({"result": check.size})

    @body_limit(DEFAULT_BATCH_BODY)
    async def _write_batch(self, request: web.Request) -> web.Response:
        """A batch of whole files (a load's upload). The middleware has checked the signature,
        refused a body over the limit (413) and checked its signed digest (401) before this
        runs; a malformed batch or a refused path is a 400 or 403 with nothing written."""
        chunk = self._chunk(request)
        if chunk.replica:
            return _fs_error(fserrors.ResourceReadOnly("/"))
        body = await request.read()
        try:
            files = parse_batch(body)
            written = await self._blocking(write_batch, chunk, files)
        except (BatchError, PathEscapes, fserrors.FSError, DiskFull, OSError) as exc:
            return _refusal(exc)
        return web.json_response({"result": written})

    async def _archive(self, request: web.Request) -> web.StreamResponse:
        chunk = self._chunk(request)
        resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)
        gone: list[bool] = []

        class _Sink:
            def write(self, data: bytes) -> int:
                if gone:
                    raise OSError("client went away")
                asyncio.run_coroutine_threadsafe(queue.put(bytes(data)), loop).result()
                return len(data)

        def produce() -> None:
            try:
                with tarfile.open(fileobj=_Sink(), mode="w|", bufsize=DEFAULT_ARCHIVE_BLOCK) as tar:
                    root = chunk.fs.root_path
                    real_root = os.path.realpath(root)
                    for dirpath, dirs, files in os.walk(root):
                        dirs.sort()
                        for name in sorted(dirs) + sorted(files):
                            if is_internal(name):
                                continue
                            full = os.path.join(dirpath, name)
                            if os.path.islink(full) and not within(real_root, full):
                                log.info("archive of %s: skipping %s, a symbolic link out of the chunk",
                                         chunk.name, full)
                                continue
                            tar.add(full, arcname=os.path.relpath(full, root), recursive=False)
            finally:
                asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

        producer = loop.run_in_executor(None, produce)
        try:
            while (block := await queue.get()) is not None:
                await resp.write(block)
        except BaseException:
            gone.append(True)
            while await queue.get() is not None:     # let the producer finish
                pass
            raise
        finally:
            await asyncio.gather(producer, return_exceptions=True)
        await resp.write_eof()
        return resp
