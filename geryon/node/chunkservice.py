"""The chunk service: a node's chunk disks over HTTP, the `fs` primitives as JSON calls.

Routes (all signed with the cluster secret; see `registry.auth`):
  GET  /v1/chunks                          the chunks served, with capacity and free space
  POST /v1/chunks/{chunk}/op               {"op": NAME, "args": {...}} -> {"result": ...}
  GET  /v1/chunks/{chunk}/file?path=P      the bytes (Range honoured, sendfile for the body)
  PUT  /v1/chunks/{chunk}/file?path=P      replace (or `&exclusive=1` create) a file
  GET  /v1/chunks/{chunk}/archive          the whole chunk as an uncompressed tar stream

Every path is checked to stay inside its chunk (`../` and symlinks out are refused, 403).
Writes go through `ChunkFS`, so the capacity holds and a refused write leaves nothing;
replica chunks refuse writes. `fs` errors travel by class name (`ResourceNotFound`) and
are rebuilt by `geryon.remotefs`. Not here: serving cpus, registering anything.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from fs import errors as fserrors
from fs.path import normpath

from geryon.chunk import ChunkFS, is_internal
from geryon.errors import DiskFull

log = logging.getLogger(__name__)

WRITE_OPS = frozenset({"makedir", "remove", "removedir", "removetree", "setinfo", "move", "copy",
                       "checkwrite"})
"""Operations that change a chunk; replicas refuse them."""

READ_OPS = frozenset({"getinfo", "listdir", "scandir", "usage"})
"""Operations that only look."""

DEFAULT_SMALL_FILE = 64 << 10
"""Files up to this size are read and sent in one piece; larger ones go by sendfile."""

DEFAULT_ARCHIVE_BLOCK = 1 << 20
"""Bytes per write when streaming a chunk as tar."""


class PathEscapes(Exception):
    """A request's path leaves its chunk."""


@dataclass
class ServedChunk:
    """One chunk disk this node serves."""

    name: str
    fs: ChunkFS
    replica: bool = False

    def usage(self) -> dict[str, Any]:
        used = self.fs.used()
        cap = self.fs.capacity
        return {"capacity": cap, "used": used, "free": None if cap is None else max(0, cap - used),
                "replica": self.replica}


def safe_path(path: Any) -> str:
    """`path` normalised and absolute within the chunk; raises PathEscapes otherwise."""
    if not isinstance(path, str) or "\0" in path:
        raise PathEscapes(f"bad path {path!r}")
    try:
        return normpath("/" + path.lstrip("/")) if path else "/"
    except fserrors.IllegalBackReference as exc:
        raise PathEscapes(f"{path}: path escapes the chunk") from exc


def _inside(chunk: ServedChunk, path: str) -> str:
    """The system path of `path`, refusing symlinks that lead out of the chunk."""
    sys_path = chunk.fs.getsyspath(path)
    root = os.path.realpath(chunk.fs.root_path)
    real = os.path.realpath(sys_path)
    if real != root and not real.startswith(root + os.sep):
        raise PathEscapes(f"{path}: path escapes the chunk")
    return sys_path


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
    return web.json_response({"error": str(exc), "kind": "bad"}, status=400)


def _run_op(chunk: ServedChunk, op: str, args: dict[str, Any]) -> Any:
    """One `fs` call on the chunk; every path argument checked first."""
    f = chunk.fs
    for key in ("path", "src", "dst"):
        if key in args:
            args[key] = safe_path(args[key])
            # A destination need not exist yet, but its directory must be inside too.
            _inside(chunk, os.path.dirname(args[key]) if key == "dst" else args[key])
    if op == "getinfo":
        return f.getinfo(args["path"], args.get("namespaces")).raw
    if op == "listdir":
        return f.listdir(args["path"])
    if op == "scandir":
        return [i.raw for i in f.scandir(args["path"], args.get("namespaces"))]
    if op == "makedir":
        f.makedir(args["path"], recreate=bool(args.get("recreate")))
        return None
    if op == "remove":
        f.remove(args["path"])
        return None
    if op == "removedir":
        f.removedir(args["path"])
        return None
    if op == "removetree":
        f.removetree(args["path"])
        return None
    if op == "setinfo":
        f.setinfo(args["path"], args.get("info") or {})
        return None
    if op == "move":
        f.move(args["src"], args["dst"], overwrite=bool(args.get("overwrite")))
        return None
    if op == "copy":
        f.copy(args["src"], args["dst"], overwrite=bool(args.get("overwrite")))
        return None
    if op == "checkwrite":
        return _check_write(f, args["path"], bool(args.get("exclusive")))
    if op == "usage":
        return chunk.usage()
    raise ValueError(f"unknown op {op!r}")


def _check_write(f: ChunkFS, path: str, exclusive: bool) -> None:
    """Raise what `openbin(path, 'w' or 'x')` would raise, without writing."""
    if path == "/":
        raise fserrors.FileExpected(path)
    if is_internal(os.path.basename(path)):
        raise fserrors.ResourceReadOnly(path)
    parent = os.path.dirname(path) or "/"
    if not f.isdir(parent):
        raise fserrors.ResourceNotFound(path)
    if f.isdir(path):
        raise fserrors.FileExpected(path)
    if exclusive and f.exists(path):
        raise fserrors.FileExists(path)


def _write_file(chunk: ServedChunk, path: str, body: bytes, exclusive: bool) -> None:
    _check_write(chunk.fs, path, exclusive)
    with chunk.fs.openbin(path, "xb" if exclusive else "wb") as out:
        out.write(body)


class ChunkService:
    """The routes serving `chunks` (name -> ServedChunk)."""

    def __init__(self, chunks: dict[str, ServedChunk]) -> None:
        self.chunks = chunks

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/chunks", self._list),
                web.post("/v1/chunks/{chunk}/op", self._op),
                web.get("/v1/chunks/{chunk}/file", self._read),
                web.put("/v1/chunks/{chunk}/file", self._write),
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
        out = {name: await self._blocking(c.usage) for name, c in self.chunks.items()}
        return web.json_response({"chunks": out})

    async def _op(self, request: web.Request) -> web.Response:
        chunk = self._chunk(request)
        try:
            doc = await request.json()
            op, args = str(doc["op"]), dict(doc.get("args") or {})
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "bad request", "kind": "bad"}, status=400)
        if op not in READ_OPS | WRITE_OPS:
            return web.json_response({"error": f"unknown op {op[:32]!r}", "kind": "bad"}, status=400)
        if chunk.replica and op in WRITE_OPS:
            return _fs_error(fserrors.ResourceReadOnly(str(args.get("path", args.get("dst", "/")))))
        try:
            result = await self._blocking(_run_op, chunk, op, args)
        except (fserrors.FSError, PathEscapes, DiskFull, ValueError) as exc:
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

    async def _write(self, request: web.Request) -> web.Response:
        chunk = self._chunk(request)
        try:
            path = safe_path(request.query.get("path", ""))
            _inside(chunk, os.path.dirname(path) or "/")
        except (PathEscapes, fserrors.FSError) as exc:
            return _refusal(exc)
        if chunk.replica:
            return _fs_error(fserrors.ResourceReadOnly(path))
        body = await request.read()
        try:
            await self._blocking(_write_file, chunk, path, body, request.query.get("exclusive") == "1")
        except (fserrors.FSError, DiskFull) as exc:
            return _refusal(exc)
        return web.json_response({"result": len(body)})

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
                    for dirpath, dirs, files in os.walk(root):
                        dirs.sort()
                        for name in sorted(dirs) + sorted(files):
                            if is_internal(name):
                                continue
                            full = os.path.join(dirpath, name)
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
