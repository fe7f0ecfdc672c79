"""Chunk ops: what a node does to one chunk disk it serves, the `fs` primitives and beyond.

`ServedChunk` is one chunk disk a node serves. `_run_op` runs one of `READ_OPS` or
`WRITE_OPS` on it, every path checked first to stay inside the chunk (`../` and symlinks
out raise `PathEscapes`). Writes go through `ChunkFS`, so the capacity holds and a refused
write leaves nothing, and keep a chunk's checksum manifest current when it has one (so a
file changed through Geryon is never mistaken for damage). Beyond the `fs` primitives, ops
for checksums (`manifest`, `sums`, `check`) and, through `_sync_op`, for replication
(`SYNC_OPS`: `pull` copies a file from another node, verified; `syncremove`, `putsums`,
`clear`, `role`), which replicas accept; `clear` empties through `geryon.node.trash`. A
load's claims are `geryon.node.claims`. Everything here blocks: the service runs it in a
worker thread.

Not here: routes, HTTP statuses and refusing writes to replicas (`geryon.node.chunkservice`),
deciding what to copy (`geryon.disks.replicate`), the pool's bookkeeping
(`geryon.disks.allocate.ChunkPool`).
"""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fs import errors as fserrors
from fs.path import normpath

from geryon.disks.checksum import (ChecksumMismatch, FileState, Summer, check_disk, current_sums, manifest_from_json,
                             manifest_key, manifest_to_json, read_manifest, sum_bytes, update_manifest,
                             write_manifest)
from geryon.disks.chunk import TEMP_MARK, TRASH_NAME, ChunkFS, is_internal
from geryon.errors import GeryonError
from geryon.net.connection import NodeConnection, raise_for
from geryon.node.claims import claim_expired, drop_claim, write_claim  # noqa: F401  (re-exported)
from geryon.node.trash import Trash

if TYPE_CHECKING:
    from geryon.disks.allocate import ChunkPool

log = logging.getLogger("geryon.node.chunkservice")  # the service's logger: its warnings keep one name

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

CLAIM_OPS = frozenset({"claim"})
"""A load's lease on a chunk it is filling (`{}`: take or renew, `{"done": true}`: drop)."""

DEFAULT_CLAIM_LEASE = 60.0
"""Seconds a claimed chunk stays claimed without a renewal; then its node reclaims it."""

DEFAULT_PULL_TIMEOUT = 600.0
"""Seconds a node waits on another node while pulling one file from it."""

PULL_DIR = f"/{TEMP_MARK}pull"
"""Hidden directory of a chunk where pulled files are written before they are checked."""


class PathEscapes(GeryonError):
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
        clean = normpath("/" + path.lstrip("/")) if path else "/"
    except fserrors.IllegalBackReference as exc:
        raise PathEscapes(f"{path}: path escapes the chunk") from exc
    if TRASH_NAME in clean.split("/"):       # what emptying moved away is no one's to read or write
        raise fserrors.ResourceNotFound(clean)
    return clean


def _inside(chunk: ServedChunk, path: str) -> str:
    """The system path of `path`, refusing symlinks that lead out of the chunk."""
    sys_path = chunk.fs.getsyspath(path)
    root = os.path.realpath(chunk.fs.root_path)
    real = os.path.realpath(sys_path)
    if real != root and not real.startswith(root + os.sep):
        raise PathEscapes(f"{path}: path escapes the chunk")
    return sys_path


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
        from geryon.records.split import list_local_files
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
             pool: ChunkPool | None, trash: Trash | None = None) -> Any:
    """One replication op (`SYNC_OPS`); replicas accept these. `clear` moves the chunk's
    files to its trash and returns, `trash` deletes them (None: before returning)."""
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
    if op == "clear":                   # into the trash at once, deleted in the background
        if trash is None:
            trash = Trash()
            trash.empty(chunk)
            trash.wait()
        else:
            trash.empty(chunk)
        chunk.walked = None             # its next refresh says it is free (all of it) at once
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


class StreamedWrite:
    """A file upload arriving in pieces: written under a temporary name, committed only by `commit`.

    The chunk's capacity is enforced on every piece (DiskFull); `abort` leaves nothing behind.
    Blocking: run it in a worker thread.
    """

    def __init__(self, chunk: ServedChunk, path: str, exclusive: bool) -> None:
        _check_write(chunk.fs, path, exclusive)
        self.chunk, self.path = chunk, path
        self._sums = Summer() if read_manifest(chunk.fs.root_path) is not None else None
        self._out = chunk.fs.openbin(path, "xb" if exclusive else "wb")

    def write(self, data: bytes) -> None:
        try:
            self._out.write(data)
        except BaseException:
            self.abort()
            raise
        if self._sums is not None:
            self._sums.update(data)

    def abort(self) -> None:
        """Drop what was written; idempotent."""
        abort = getattr(self._out, "abort", None)
        if abort is not None:
            abort()
        else:                                    # not a chunk (a plain directory): nothing staged
            self._out.close()

    def commit(self) -> None:
        """Put the file in place (and record it in the chunk's manifest, if it keeps one)."""
        if self._sums is None:
            self._out.close()
            return
        with self.chunk.lock:     # the write and its record together, so they cannot cross
            self._out.close()
            mtime = os.stat(self.chunk.fs.getsyspath(self.path)).st_mtime_ns
            update_manifest(self.chunk.fs.root_path, {self.path: self._sums.result(mtime)})
