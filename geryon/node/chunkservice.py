"""The chunk service: a node's chunk disks over HTTP, the `fs` primitives as JSON calls.

Routes (all signed with the cluster secret; see `registry.auth`):
  GET    /v1/chunks                        the chunks served, with capacity and free space
  POST   /v1/chunks                        {"capacity": N} -> a new chunk from the pool
  DELETE /v1/chunks/{chunk}                remove a chunk made from the pool
  POST   /v1/chunks/{chunk}/op             {"op": NAME, "args": {...}} -> {"result": ...}
  GET    /v1/chunks/{chunk}/file?path=P    the bytes (Range honoured, sendfile for the body)
  PUT    /v1/chunks/{chunk}/file?path=P    replace (or `&exclusive=1` create) a file
  GET    /v1/chunks/{chunk}/archive        the whole chunk as an uncompressed tar stream

Every path is checked to stay inside its chunk (`../` and symlinks out are refused, 403).
Writes go through `ChunkFS`, so the capacity holds and a refused write leaves nothing;
replica chunks refuse writes. Writes keep a chunk's checksum manifest current when it has
one (so a file changed through Geryon is never mistaken for damage). Beyond the `fs`
primitives, ops for checksums (`manifest`, `sums`, `check`) and for replication (`pull`
copies a file from another node, verified; `syncremove`, `putsums`, `clear`, `role`),
which replicas accept. `fs` errors travel by class name (`ResourceNotFound`) and are
rebuilt by `geryon.remotefs`. Not here: serving cpus, registering anything, deciding
what to copy (`geryon.replicate`), the pool's bookkeeping (`geryon.allocate.ChunkPool`).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import shutil
import stat
import tarfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web
from fs import errors as fserrors
from fs.path import normpath

from geryon.checksum import (ChecksumMismatch, FileState, Summer, check_disk, current_sums, manifest_from_json,
                             manifest_key, manifest_to_json, read_manifest, sum_bytes, update_manifest,
                             write_manifest)
from geryon.chunk import META_NAME, TEMP_MARK, ChunkFS, is_internal
from geryon.errors import DiskFull, GeryonError
from geryon.node.connection import NodeConnection, raise_for

if TYPE_CHECKING:
    from geryon.allocate import ChunkPool

log = logging.getLogger(__name__)

WRITE_OPS = frozenset({"makedir", "remove", "removedir", "removetree", "setinfo", "move", "copy",
                       "checkwrite"})
"""Operations that change a chunk; replicas refuse them."""

USAGE_MIN_AGE = 2.0
"""Seconds a walked count of a chunk's bytes serves the daemon's refresh, at least."""

USAGE_WALK_FACTOR = 50
"""... and at least this many times what the walk took (a walk costs at most 2 % of a core)."""

READ_OPS = frozenset({"getinfo", "listdir", "scandir", "files", "usage", "manifest", "sums", "check"})
"""Operations that only look (`sums` with `record` also updates the manifest, masters only)."""

SYNC_OPS = frozenset({"pull", "syncremove", "putsums", "clear", "role"})
"""Replication's operations: how a replica is filled, so replicas accept them."""

DEFAULT_PULL_TIMEOUT = 600.0
"""Seconds a node waits on another node while pulling one file from it."""

PULL_DIR = f"/{TEMP_MARK}pull"
"""Hidden directory of a chunk where pulled files are written before they are checked."""

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
    pooled: bool = False          # made from the node's pool (may be deleted)
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)
    walked: tuple[float, int, float] | None = field(default=None, compare=False, repr=False)  # when, used, took

    def usage(self, cheap: bool = False) -> dict[str, Any]:
        """Capacity, used and free bytes. `cheap` is for the daemon's refresh every second:
        a plain directory reports no figures, and a chunk is walked again only when the
        last count is older than USAGE_WALK_FACTOR times what that walk took (at least
        USAGE_MIN_AGE seconds), so a big chunk costs a few percent of a core, not all of it."""
        cap = self.fs.capacity
        if cheap:
            if cap is None:
                return {"capacity": None, "used": None, "free": None, "replica": self.replica}
            now = time.monotonic()
            if self.walked is None or now - self.walked[0] > max(USAGE_MIN_AGE, USAGE_WALK_FACTOR * self.walked[2]):
                used = self.fs.used()
                self.walked = (time.monotonic(), used, time.monotonic() - now)
            used = self.walked[1]
        else:
            used = self.fs.used()
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
    if isinstance(exc, ChecksumMismatch | PullMismatch):
        return web.json_response({"error": str(exc), "kind": "mismatch"}, status=409)
    if isinstance(exc, KeyError):
        return web.json_response({"error": f"bad request: missing {exc}", "kind": "bad"}, status=400)
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
    if op == "files":  # every data file with its size, in one answer (a job's planning)
        from geryon.split import list_local_files
        return list_local_files(f.root_path)
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
    if op == "manifest":                # the whole manifest, or just the entries of `paths`
        recorded = read_manifest(f.root_path)
        if recorded is not None and args.get("paths") is not None:
            wanted = {manifest_key(str(p)) for p in args["paths"]}
            recorded = {k: v for k, v in recorded.items() if k in wanted}
        return None if recorded is None else manifest_to_json(recorded)
    if op == "check":
        report = check_disk(f.root_path)
        return {"verified": report.verified, "damaged": report.damaged, "unrecorded": report.unrecorded,
                "has_manifest": report.has_manifest}
    if op == "sums":
        return _sums(chunk, bool(args.get("record")), bool(args.get("accept")), bool(args.get("verify")))
    raise ValueError(f"unknown op {op!r}")


def _keep_manifest(chunk: ServedChunk, op: str, args: dict[str, Any]) -> None:
    """After a write op, bring the chunk's manifest (if it has one) up to date."""
    root = chunk.fs.root_path
    try:
        if op == "remove":
            update_manifest(root, drop=[args["path"]])
        elif op == "removetree":
            update_manifest(root, drop_under=[args["path"]])
        elif op in ("move", "copy"):
            recorded = read_manifest(root)
            if recorded is None:
                return
            src = recorded.get(manifest_key(args["src"]))
            drop = [args["src"]] if op == "move" else []
            add = {}
            if src is not None:
                add[args["dst"]] = replace(src, mtime_ns=os.stat(chunk.fs.getsyspath(args["dst"])).st_mtime_ns)
            else:
                drop.append(args["dst"])        # an unrecorded file took a recorded one's place
            update_manifest(root, add, drop)
    except (ChecksumMismatch, OSError) as exc:
        log.warning("chunk %s: manifest not updated after %s: %s", chunk.name, op, exc)


def _sums(chunk: ServedChunk, record: bool, accept: bool, verify: bool = False) -> dict[str, Any]:
    """Every file's checksums now, with its state against the manifest (`current_sums`).

    With `record`, new files and refreshed mtimes are written to the manifest (made if
    missing); with `accept`, changed files are too and missing ones are forgotten; with
    `verify`, every file is read, not only those whose size or mtime changed.
    """
    if (record or accept) and chunk.replica:
        raise fserrors.ResourceReadOnly("/")
    root = chunk.fs.root_path
    with chunk.lock:
        sums, states, missing = current_sums(root, trust_stat=not verify)
        if record or accept:
            keep = {FileState.NEW, FileState.TOUCHED} | ({FileState.CHANGED} if accept else set())
            add = {k: v for k, v in sums.items() if states[k] in keep}
            drop = missing if accept else []
            if add or drop or read_manifest(root) is None:
                update_manifest(root, add, drop, create=True)
    return {"files": {k: {**sums[k].to_json(), "state": states[k].value} for k in sorted(sums)},
            "missing": missing}


class PullMismatch(GeryonError):
    """A pulled file's bytes differ from what its source recorded: nothing was kept."""


def _pull(chunk: ServedChunk, args: dict[str, Any], secret: bytes | None) -> dict[str, Any]:
    """Copy one file from another node's chunk into this one, checked against its sums.

    The bytes go to a hidden file first and replace the old file only when their size
    and SHA-256 match `size` and `sha256`; the capacity holds throughout.
    """
    source, src_chunk = str(args["source"]), str(args["chunk"])
    size, sha = int(args["size"]), str(args["sha256"])
    path = safe_path(args["path"])
    if path == "/" or is_internal(os.path.basename(path)):
        raise fserrors.ResourceReadOnly(path)
    final = _inside(chunk, path)
    tmp = f"{PULL_DIR}/{secrets.token_hex(8)}"
    chunk.fs.makedirs(PULL_DIR, recreate=True)
    summer = Summer()
    conn = NodeConnection(source, secret, DEFAULT_PULL_TIMEOUT)
    try:
        resp, raw = conn.open("GET", f"/v1/chunks/{quote(src_chunk, safe='')}/file?path={quote(path, safe='/')}")
        try:
            if resp.status >= 300:
                raise_for(resp.status, resp.read(), source, path)
            with chunk.fs.openbin(tmp, "wb") as out:
                while block := resp.read(1 << 20):
                    summer.update(block)
                    out.write(block)
        finally:
            conn.release(resp, raw)
        got = summer.result()
        if (got.size, got.sha256) != (size, sha):
            raise PullMismatch(f"{source} {src_chunk}:{path}: got {got.size} bytes with SHA-256 {got.sha256[:12]}..., "
                               f"expected {size} bytes with {sha[:12]}... (changed or damaged at the source)")
        parent = os.path.dirname(path)
        if parent != "/":
            chunk.fs.makedirs(parent, recreate=True)
        os.replace(chunk.fs.getsyspath(tmp), final)
    except BaseException:
        try:
            chunk.fs.remove(tmp)
        except fserrors.FSError:
            pass
        raise
    finally:
        conn.close()
    return summer.result(os.stat(final).st_mtime_ns).to_json()


def _sync_op(chunk: ServedChunk, op: str, args: dict[str, Any], secret: bytes | None,
             pool: ChunkPool | None) -> Any:
    """One replication op (`SYNC_OPS`); replicas accept these."""
    root = chunk.fs.root_path
    if op == "pull":
        return _pull(chunk, args, secret)
    if op == "syncremove":
        for raw_path in list(args.get("paths") or []):
            path = safe_path(raw_path)
            _inside(chunk, path)
            if chunk.fs.isfile(path):
                chunk.fs.remove(path)
            parent = os.path.dirname(path)
            while parent != "/" and chunk.fs.isdir(parent) and not os.listdir(chunk.fs.getsyspath(parent)):
                chunk.fs.removedir(parent)
                parent = os.path.dirname(parent)
        return None
    if op == "putsums":
        with chunk.lock:
            write_manifest(root, manifest_from_json(args.get("files") or {}, f"chunk {chunk.name}"))
        return None
    if op == "clear":
        with chunk.lock:
            for name in os.listdir(root):
                full = os.path.join(root, name)
                if name == META_NAME:
                    continue
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full)
                else:
                    os.unlink(full)
        return None
    if op == "role":
        chunk.replica = bool(args.get("replica"))
        if chunk.pooled and pool is not None:
            pool.set_role(chunk.name, chunk.replica)
        return None
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
    root = chunk.fs.root_path
    if read_manifest(root) is None:
        with chunk.fs.openbin(path, "xb" if exclusive else "wb") as out:
            out.write(body)
        return
    with chunk.lock:          # the write and its record together, so they cannot cross
        with chunk.fs.openbin(path, "xb" if exclusive else "wb") as out:
            out.write(body)
        mtime = os.stat(chunk.fs.getsyspath(path)).st_mtime_ns
        update_manifest(root, {path: sum_bytes(body, mtime)})


class ChunkService:
    """The routes serving `chunks` (name -> ServedChunk).

    Args:
        secret: signs this node's requests to others (pulling a file for a replica).
        pool: where new chunks are made on request (None: this node makes none).
        on_change: awaited after a chunk is made or deleted (the daemon re-registers).
    """

    def __init__(self, chunks: dict[str, ServedChunk], *, secret: bytes | None = None,
                 pool: ChunkPool | None = None, on_change: Callable[[], Awaitable[None]] | None = None) -> None:
        self.chunks = chunks
        self.secret = secret
        self.pool = pool
        self.on_change = on_change

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/chunks", self._list),
                web.post("/v1/chunks", self._create),
                web.delete("/v1/chunks/{chunk}", self._delete),
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
            doc = await request.json()
            capacity, replica = int(doc["capacity"]), bool(doc.get("replica"))
            name = doc.get("name")
            if name is not None and not isinstance(name, str):
                raise TypeError("name")
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "bad request: want {\"capacity\": BYTES}", "kind": "bad"}, status=400)
        try:
            name, path = await self._blocking(self.pool.create, capacity, name, replica, frozenset(self.chunks))
        except DiskFull as exc:
            return _refusal(exc)
        except GeryonError as exc:
            return web.json_response({"error": str(exc), "kind": "bad"}, status=400)
        self.chunks[name] = ServedChunk(name, ChunkFS(path), replica, pooled=True)
        log.info("made chunk %s (%d bytes) from the pool", name, capacity)
        if self.on_change is not None:
            await self.on_change()
        return web.json_response({"result": {"chunk": name, "capacity": capacity, "replica": replica}}, status=201)

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
            doc = await request.json()
            op, args = str(doc["op"]), dict(doc.get("args") or {})
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "bad request", "kind": "bad"}, status=400)
        if op not in READ_OPS | WRITE_OPS | SYNC_OPS:
            return web.json_response({"error": f"unknown op {op[:32]!r}", "kind": "bad"}, status=400)
        if chunk.replica and op in WRITE_OPS:
            return _fs_error(fserrors.ResourceReadOnly(str(args.get("path", args.get("dst", "/")))))
        try:
            if op in SYNC_OPS:
                result = await self._blocking(_sync_op, chunk, op, args, self.secret, self.pool)
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
