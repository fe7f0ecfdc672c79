"""Writing a batch of whole files into a chunk at once: a load's upload, all or nothing.

`write_batch` checks every path first (inside the chunk, no symbolic link out, no
bookkeeping name, not a directory), reserves the batch's bytes against the capacity in
one step, writes every file under a temporary name, and only then renames them all into
place and records them in the chunk's manifest with one journal line. A refusal before
the renames leaves the chunk as it was. A node killed part way leaves hidden temporary
files (swept like any others) and, at worst, renamed files its manifest does not record
yet: never a recorded file that is missing or different. Blocking: run it in a worker
thread.

Not here: the wire format (`geryon.disks.filebatch`), the route and its statuses
(`geryon.node.chunkservice`).
"""
from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from fs import errors as fserrors

from geryon.disks.checksum import FileSum, read_manifest, sum_bytes, update_manifest
from geryon.disks.chunk import TEMP_MARK, is_internal, within
from geryon.errors import DiskFull
from geryon.node.chunkops import PathEscapes, ServedChunk, safe_path

log = logging.getLogger("geryon.node.chunkservice")  # the service's logger: its warnings keep one name

__all__ = ["WRITER_THREADS", "write_batch"]

WRITER_THREADS = 4
"""Threads creating a batch's files: a file creation can take milliseconds, and they overlap."""


def _checked(chunk: ServedChunk, files: Sequence[tuple[str, memoryview]]) -> list[tuple[str, str, memoryview, int]]:
    """(path, system path, bytes, size of the file it replaces) of every file, or the first refusal."""
    real_root = os.path.realpath(chunk.fs.root_path)
    inside: dict[str, bool] = {}             # parent directory -> within the chunk (resolved once)
    out = []
    for raw, body in files:
        path = safe_path(raw)
        if path == "/":
            raise fserrors.FileExpected(path)
        if any(is_internal(part) for part in path.strip("/").split("/")):
            raise fserrors.ResourceReadOnly(path)
        sys_path = chunk.fs.getsyspath(path)
        parent = os.path.dirname(sys_path)
        if parent not in inside:
            inside[parent] = within(real_root, parent)
        if not inside[parent]:
            raise PathEscapes(f"{path}: path escapes the chunk")
        try:
            st = os.lstat(sys_path)
        except (FileNotFoundError, NotADirectoryError):
            out.append((path, sys_path, body, 0))
            continue
        if stat.S_ISLNK(st.st_mode):
            raise PathEscapes(f"{path}: a symbolic link: refused")
        if stat.S_ISDIR(st.st_mode):
            raise fserrors.FileExpected(path)
        out.append((path, sys_path, body, st.st_size))
    return out


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
        grow = sum(len(b) - old for _, _, b, old in checked)
        staged: list[str] = []                        # temporary files made so far
        done: list[tuple[str, str, str, FileSum | None]] = []    # path, temporary, final, sums
        lock = threading.Lock()

        def put(item: tuple[str, str, memoryview, int]) -> tuple[str, str, str, FileSum | None]:
            path, sys_path, body, _ = item
            sums = sum_bytes(body) if recording else None
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
                if sums is not None:
                    sums = replace(sums, mtime_ns=os.fstat(fd).st_mtime_ns)
                return path, tmp, sys_path, sums
            finally:
                os.close(fd)

        def write() -> None:
            try:
                for parent in sorted({os.path.dirname(p) for p, _, _, _ in checked}):
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
            update_manifest(root, {path: sums for path, _, _, sums in done if sums is not None})
    return len(checked)
