"""Writing a batch of whole files into a chunk at once: a load's upload, all or nothing.

`write_batch` checks every path first (inside the chunk, no symbolic link out, no
bookkeeping name, not a directory), reserves the batch's bytes against the capacity in
one step, writes every file under a temporary name, and only then renames them all into
place and records them in the chunk's manifest with one journal line. A refusal before
the renames leaves the chunk as it was. A node killed part way leaves hidden temporary
files (swept like any others) and, at worst, renamed files its manifest does not record
yet: never a recorded file that is missing or different. Blocking: run it in a worker
thread.

Not here: the wire format (`geryon.filebatch`), the route and its statuses
(`geryon.node.chunkservice`).
"""
from __future__ import annotations

import errno
import logging
import os
import secrets
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from fs import errors as fserrors

from geryon.checksum import FileSum, read_manifest, sum_bytes, update_manifest
from geryon.chunk import TEMP_MARK, is_internal, within
from geryon.errors import DiskFull
from geryon.node.chunkops import PathEscapes, ServedChunk, safe_path

log = logging.getLogger("geryon.node.chunkservice")  # the service's logger: its warnings keep one name

__all__ = ["WRITER_THREADS", "write_batch"]

WRITER_THREADS = 16
"""Threads creating a batch's files: a file creation can take milliseconds, and they overlap."""


def _checked(chunk: ServedChunk, files: Sequence[tuple[str, memoryview]]) -> list[tuple[str, str, memoryview]]:
    """(path, system path, bytes) of every file, or the first refusal."""
    real_root = os.path.realpath(chunk.fs.root_path)
    out = []
    for raw, body in files:
        path = safe_path(raw)
        if path == "/":
            raise fserrors.FileExpected(path)
        if any(is_internal(part) for part in path.strip("/").split("/")):
            raise fserrors.ResourceReadOnly(path)
        sys_path = chunk.fs.getsyspath(path)
        if not within(real_root, os.path.dirname(sys_path)):
            raise PathEscapes(f"{path}: path escapes the chunk")
        if os.path.islink(sys_path):
            raise PathEscapes(f"{path}: a symbolic link: refused")
        if os.path.isdir(sys_path):
            raise fserrors.FileExpected(path)
        out.append((path, sys_path, body))
    return out


def _old_size(sys_path: str) -> int:
    try:
        return os.lstat(sys_path).st_size
    except FileNotFoundError:
        return 0


def write_batch(chunk: ServedChunk, files: Sequence[tuple[str, memoryview]]) -> int:
    """Write `files` ((path, bytes)) into the chunk, all or none; the number written.

    Raises:
        PathEscapes: a path leads out of the chunk, or names a symbolic link.
        fserrors.FSError: a path names the root, a directory or a bookkeeping file
            (ResourceReadOnly), or a parent is a file.
        DiskFull: the batch does not fit.
    """
    checked = _checked(chunk, files)
    if not checked:
        return 0
    root = chunk.fs.root_path
    with chunk.lock:
        recording = read_manifest(root) is not None
        grow = sum(len(b) for _, _, b in checked) - sum(_old_size(s) for _, s, _ in checked)
        staged: list[str] = []                        # temporary files made so far
        done: list[tuple[str, str, str, int]] = []    # path, temporary, final, mtime
        lock = threading.Lock()

        def put(item: tuple[str, str, memoryview]) -> tuple[str, str, str, int]:
            path, sys_path, body = item
            parent = os.path.dirname(sys_path)
            tmp = os.path.join(parent, f".{os.path.basename(sys_path)}{TEMP_MARK}{secrets.token_hex(4)}")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                chunk.fs.makedirs(os.path.dirname(path), recreate=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with lock:
                staged.append(tmp)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view):]
                return path, tmp, sys_path, os.fstat(fd).st_mtime_ns
            finally:
                os.close(fd)

        def write() -> None:
            try:
                for parent in sorted({os.path.dirname(p) for p, _, _ in checked}):
                    if not os.path.isdir(chunk.fs.getsyspath(parent)):
                        chunk.fs.makedirs(parent, recreate=True)
                with ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="geryon-batch") as pool:
                    done.extend(pool.map(put, checked))
            except BaseException:
                for tmp in staged:
                    try:
                        os.unlink(tmp)
                    except FileNotFoundError:
                        pass
                raise
            for _, tmp, final, _ in done:      # all written: now every one takes its place
                os.replace(tmp, final)

        try:
            chunk.fs.write_accounted(grow, checked[0][0], write)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFull(f"{root}: no space left writing a batch of {len(checked)} files") from exc
            raise
        if recording:
            add: dict[str, FileSum] = {}
            for (path, _, _, mtime), (_, _, body) in zip(done, checked):
                add[path] = sum_bytes(body, mtime)
            update_manifest(root, add)
    return len(checked)
