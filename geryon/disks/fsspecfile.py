"""Reading and writing one file of a Geryon disk, for `geryon.disks.fsspecfs`: `GeryonFile`.

A read is one ranged request on a node's chunk, or a verified read of that range from
whichever copy of a named disk works (`read_range`); a write goes to the disk's master and
lands whole or not at all (`write_whole`: one streamed PUT on a node's chunk), making the
file's missing parent directories first when it must (`with_parents`). `GeryonFile` reads
blocks of `DEFAULT_BLOCK_SIZE` and spools what is written, sent whole when it is closed.

Not here: paths, disks, errors and the fsspec filesystem itself (`geryon.disks.fsspecfs`).
"""
from __future__ import annotations

import io
import logging
import posixpath
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

from fs import errors as fserrors
from fs.base import FS
from fsspec.spec import AbstractBufferedFile

from geryon.defaults import DEFAULT_SPOOL
from geryon.net.connection import NodeUnavailable

if TYPE_CHECKING:
    from geryon.disks.fsspecfs import GeryonFileSystem

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZE = 4 << 20
"""Bytes fetched per read request of a file opened for reading (fsspec's block size)."""


def read_range(disk: FS, inner: str, start: int, end: int) -> bytes:
    """Bytes `start`..`end` of a file: one ranged request on a node's chunk; on a disk name,
    a verified read of that range from whichever copy works (`FailoverFS`)."""
    ranged = getattr(disk, "read_range", None)
    if callable(ranged):
        return ranged(inner, start, end)
    with disk.openbin(inner) as raw:
        raw.seek(start)
        want, parts = max(0, end - start), []
        while want > 0 and (block := raw.read(want)):
            parts.append(block)
            want -= len(block)
        return b"".join(parts)


def bytes_source(data: bytes) -> Any:
    return io.BytesIO(data)


def master_of(disk: FS) -> FS:
    """Where writes to `disk` go: a `FailoverFS`'s master (replicas are read-only)."""
    from geryon.disks.failover import FailoverFS

    if isinstance(disk, FailoverFS):
        master = disk.copies[0]
        if master.fs is None:
            raise NodeUnavailable(f"{disk.disk}: master {master.where} is not live "
                                  f"({master.why or 'no node serves it'}); replicas are read-only")
        return master.fs
    return disk


def with_parents(disk: FS, inner: str, write: Any) -> None:
    """`write()`, making `inner`'s missing parent directories first if it fails for want of
    them (as object stores and fsspec's local `auto_mkdir` behave)."""
    try:
        write()
    except fserrors.ResourceNotFound:
        parent = posixpath.dirname(inner.rstrip("/"))
        if parent in ("", "/") or disk.isdir(parent):
            raise
        disk.makedirs(parent, recreate=True)
        write()


def write_whole(disk: FS, inner: str, source: Any, *, exclusive: bool) -> None:
    """Write `source` (a seekable binary file, from where it stands) to `inner`, whole or not at all."""
    target = master_of(disk)
    start = source.tell()
    put_file = getattr(target, "put_file", None)

    def write() -> None:
        source.seek(start)
        if callable(put_file):                # a RemoteFS: one streamed PUT, exclusive on the node
            put_file(target.validatepath(inner), source, exclusive=exclusive)
            return
        with target.openbin(inner, "xb" if exclusive else "wb") as f:
            shutil.copyfileobj(source, f, 1 << 20)

    with_parents(target, inner, write)


class GeryonFile(AbstractBufferedFile):
    """A file of a Geryon disk: ranged reads from the node; writes spooled, sent whole on close."""

    DEFAULT_BLOCK_SIZE = DEFAULT_BLOCK_SIZE

    def __init__(self, fs: GeryonFileSystem, path: str, mode: str = "rb", **kwargs: Any) -> None:
        self._spool: Any = None
        super().__init__(fs, path, mode, **kwargs)

    # -- reading: one request per block, read whole (no connection is held between reads) ----
    def _fetch_range(self, start: int, end: int) -> bytes:
        with self.fs._on(self.path) as (_, disk, inner):
            return read_range(disk, inner, start, end)

    # -- writing: spooled here, committed whole by the node -----------------------------------
    def _initiate_upload(self) -> None:
        self._spool = tempfile.SpooledTemporaryFile(max_size=DEFAULT_SPOOL)
        if self.mode == "ab" and self.fs.exists(self.path):
            with self.fs._on(self.path) as (_, disk, inner):
                disk.download(inner, self._spool)

    def _upload_chunk(self, final: bool = False) -> bool:
        self.buffer.seek(0)
        shutil.copyfileobj(self.buffer, self._spool)
        if final:
            self._spool.seek(0)
            try:
                with self.fs._on(self.path) as (_, disk, inner):
                    write_whole(disk, inner, self._spool, exclusive=self.mode == "xb")
            finally:
                self._spool.close()
                self._spool = None
        return True

    def discard(self) -> None:
        """Throw away what was written: nothing reaches the node."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        self.buffer = io.BytesIO()
        self.closed = True

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._spool is not None:
                self._spool.close()
                self._spool = None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # A `with` block that failed commits nothing (fsspec's default would write the part done).
        if exc_type is not None and self.mode != "rb" and not self.closed:
            self.discard()
            return
        self.close()
