"""Packing records into chunk disks: pieces in, chunks of at most N data bytes out.

Pieces are written in order; one that does not fit in what is left of the current chunk
starts the next chunk, except that a run of lines is cut after its last newline that
fits. A record larger than an empty chunk is an error naming it. Every file's checksums
are computed as it is written and recorded in the chunk's manifest when the chunk is
closed. Files are written by a few threads, because creating a file is slow on some
filesystems (~0.3 ms here) and creations overlap well. A packer given `keep_small` (`load
--cluster`) never writes a file of at most that many bytes: it hands its bytes to `on_file`
instead (they go to the node from memory; staging them cost a file creation and a removal
each, more than the upload itself). Not here: cutting sources into pieces (`pieces`),
naming and replicating chunks (`load`).
"""
from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from geryon.disks.checksum import FileSum, Summer, manifest_key, write_manifest
from geryon.disks.chunk import create_chunk
from geryon.errors import GeryonError
from geryon.ingest.pieces import Piece

log = logging.getLogger(__name__)


class RecordTooLarge(GeryonError):
    """A record does not fit in an empty chunk."""


@dataclass(frozen=True)
class LoadedDisk:
    name: str
    path: str
    nbytes: int
    files: int
    replicas: tuple[str, ...] = ()


WRITER_THREADS = 4
"""Threads writing files: creating a file costs ~0.3 ms on some filesystems, and they overlap."""

WRITE_BUDGET = 64 << 20
"""Bytes handed to the writer threads and not yet written, at most."""

FLUSH_BYTES = 8 << 20
"""Bytes of one file buffered before they are handed to a writer thread."""


def _write_file(path: str, parts: list[memoryview], append: bool, after: Future[None] | None) -> None:
    if after is not None:
        after.result()  # the earlier parts of the same file first
    try:
        f = open(path, "ab" if append else "wb")
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        f = open(path, "ab" if append else "wb")
    with f:
        for part in parts:
            f.write(part)


def _joined(parts: list[memoryview]) -> bytes:
    """The bytes of `parts`, without a copy when they are one whole bytes object."""
    if len(parts) == 1 and isinstance(parts[0].obj, bytes) and len(parts[0]) == len(parts[0].obj):
        return parts[0].obj
    return b"".join(parts)


class _Writers:
    """A few threads writing files, with a bound on the bytes waiting to be written."""

    def __init__(self, threads: int | None = None, budget: int = WRITE_BUDGET) -> None:
        self._pool = ThreadPoolExecutor(threads or WRITER_THREADS, thread_name_prefix="geryon-load")
        self._pending: deque[tuple[Future[None], int]] = deque()
        self._bytes = 0
        self._budget = budget

    def write(self, path: str, parts: list[memoryview], append: bool, after: Future[None] | None) -> Future[None]:
        size = sum(len(p) for p in parts)
        while self._pending and self._bytes + size > self._budget:
            fut, n = self._pending.popleft()
            fut.result()
            self._bytes -= n
        fut = self._pool.submit(_write_file, path, parts, append, after)
        self._pending.append((fut, size))
        self._bytes += size
        return fut

    def drain(self) -> None:
        """Wait for every write; the first failure is raised."""
        try:
            for fut, _ in self._pending:
                fut.result()
        finally:
            self._pending.clear()
            self._bytes = 0

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class ChunkPacker:
    """Writes pieces, in order, into chunks of at most `chunk_size` data bytes.

    `on_file(chunk_root, key, written, data)` is called as each file is closed: `data` is
    None and `written` the future of its last write (done: the file is whole on disk), or,
    for a file of at most `keep_small` bytes, `data` is its bytes and it is not written
    (its manifest entry has mtime_ns 0); `load --cluster` starts sending it then.
    """

    def __init__(self, staging: str, app: str, chunk_size: int,
                 on_file: Callable[[str, str, Future[None] | None, bytes | None], None] | None = None,
                 keep_small: int = 0) -> None:
        self.on_file = on_file
        self.keep_small = keep_small if on_file is not None else 0
        self._kept: set[str] = set()
        self.staging = staging
        self.app = app
        self.chunk_size = chunk_size
        self.chunks: list[LoadedDisk] = []
        self._root: str | None = None
        self._used = 0
        self._sums: dict[str, FileSum] = {}
        self._origin: dict[str, str] = {}
        self._dest: str | None = None
        self._summer: Summer | None = None
        self._buf: list[memoryview] = []
        self._buf_bytes = 0
        self._started = False
        self._last: Future[None] | None = None
        self._writers = _Writers()

    def add(self, piece: Piece) -> None:
        data = memoryview(piece.data)
        consumed = 0
        while True:
            room = self.chunk_size - self._used
            if self._root is not None and len(data) <= room:
                if len(data) or piece.dest not in self._sums:
                    self._write(piece, data)
                return
            if piece.splittable and self._root is not None and room > 0:
                cut = bytes(data[:room]).rfind(b"\n") + 1
                if cut > 0:
                    self._write(piece, data[:cut])
                    data, consumed = data[cut:], consumed + cut
            if self._root is not None and self._used == 0:
                what = "a line" if piece.splittable else "a record"
                first = len(data) if not piece.splittable else (bytes(data).find(b"\n") + 1 or len(data))
                where = piece.label if not consumed else f"{piece.label} + {consumed}"
                raise RecordTooLarge(f"{what} of {first} bytes is larger than the chunk size "
                                     f"{self.chunk_size}: {where}")
            self._next_chunk()

    def _next_chunk(self) -> None:
        self._close_chunk()
        name = f"d{len(self.chunks)}.{self.app}"
        self._root = os.path.join(self.staging, name)
        create_chunk(self._root, self.chunk_size)
        self._used = 0
        self._sums, self._origin = {}, {}

    def _write(self, piece: Piece, data: memoryview) -> None:
        assert self._root is not None
        if piece.dest != self._dest:
            self._close_file()
            key = manifest_key(piece.dest)
            if key in self._sums:
                raise GeryonError(f"{piece.label} and {self._origin[key]} would both be stored as "
                                  f"{piece.dest} in one chunk: load them separately or rename one")
            self._summer = Summer()
            self._dest = piece.dest
            self._started, self._last = False, None
            self._sums[key] = FileSum(0, "", ())  # taken; the real sum on close
            self._origin[key] = piece.label
        assert self._summer is not None
        self._buf.append(data)
        self._buf_bytes += len(data)
        self._summer.update(data)
        self._used += len(data)
        if self._buf_bytes >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        assert self._root is not None and self._dest is not None
        path = os.path.join(self._root, self._dest)
        self._last = self._writers.write(path, self._buf, self._started, self._last)
        self._started = True
        self._buf, self._buf_bytes = [], 0

    def _close_file(self) -> None:
        if self._dest is None or self._summer is None:
            return
        key = manifest_key(self._dest)
        data: bytes | None = None
        if self.keep_small > 0 and not self._started and self._buf_bytes <= self.keep_small:
            data = _joined(self._buf)          # never written: sent from memory
            self._buf, self._buf_bytes = [], 0
            self._kept.add(key)
        else:
            self._flush()
        self._sums[key] = self._summer.result()
        if self.on_file is not None and self._root is not None:
            self.on_file(self._root, key, self._last, data)
        self._dest, self._summer, self._last = None, None, None

    def _close_chunk(self) -> None:
        if self._root is None:
            return
        self._close_file()
        self._writers.drain()
        for key, s in self._sums.items():  # mtimes once the files are written
            if key not in self._kept:
                mtime = os.stat(os.path.join(self._root, key.lstrip("/"))).st_mtime_ns
                self._sums[key] = FileSum(s.size, s.sha256, s.crc32, mtime)
        write_manifest(self._root, self._sums)
        self._kept = set()
        self.chunks.append(LoadedDisk(os.path.basename(self._root), self._root, self._used, len(self._sums)))
        self._root = None

    def abort(self) -> None:
        """Stop writing; the caller removes the staged chunks."""
        try:
            self._writers.drain()
        except Exception:  # already failing; the first error is the one reported
            pass
        self._writers.close()
        self._dest, self._summer, self._root, self._buf = None, None, None, []

    def finish(self) -> list[LoadedDisk]:
        try:
            self._close_chunk()
        finally:
            self._writers.close()
        return self.chunks
