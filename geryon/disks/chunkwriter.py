"""The file being written to a chunk: every byte counted against the capacity, committed whole.

`ChunkWriter` writes under a temporary name (`ChunkFS.openbin` picks it) and renames it into
place on close, so a write that fails (past the capacity: `DiskFull`, or out of space)
leaves the old file untouched and nothing half-written; a file opened to append or update
is written in place, its growth counted the same way.

Not here: the chunk, its capacity and accounting (`geryon.disks.chunk.ChunkFS`).
"""
from __future__ import annotations

import errno
import io
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fs.mode import Mode

from geryon.errors import DiskFull

if TYPE_CHECKING:
    from geryon.disks.chunk import ChunkFS

log = logging.getLogger(__name__)


class ChunkWriter(io.RawIOBase):
    """A file being written to a chunk: counts bytes, commits by rename on close.

    `temp`: the temporary name to write under and rename into `sys_path` on close (the file
    replaced whole), or None to write `sys_path` in place (appending or updating).
    """

    def __init__(self, chunk: ChunkFS, path: str, sys_path: str, mode: Mode, temp: str | None) -> None:
        super().__init__()
        self._chunk, self._path, self._final = chunk, path, sys_path
        self._replace = replace = temp is not None
        self.name = path
        self.mode = mode.to_platform_bin()
        self._failed = False
        if temp is not None:
            self._target = temp
            self._f = open(self._target, "w+b" if mode.reading else "wb", buffering=0)
            self._old_size = os.path.getsize(sys_path) if os.path.exists(sys_path) else 0
        else:
            self._target = sys_path
            self._f = open(sys_path, mode.to_platform_bin(), buffering=0)
            self._old_size = 0
        self._size = 0 if replace else os.path.getsize(sys_path)
        if mode.appending:
            self._f.seek(0, os.SEEK_END)

    def readable(self) -> bool:
        return "r" in self.mode or "+" in self.mode

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, b: Any) -> int:
        return self._f.readinto(b)

    def fileno(self) -> int:
        return self._f.fileno()

    def truncate(self, size: int | None = None) -> int:
        target = self._f.tell() if size is None else size
        if target > self._size:
            self._checked(target - self._size, lambda: self._f.truncate(target))
        else:
            self._f.truncate(target)
            self._chunk._release(self._size - target)
        self._size = target
        return target

    def _checked(self, nbytes: int, write: Callable[[], None]) -> None:
        try:
            self._chunk._reserve_and_write(nbytes, self._path, write)
        except DiskFull:
            self._fail()
            raise
        except OSError as exc:
            self._fail()
            if exc.errno == errno.ENOSPC:
                raise DiskFull(f"{self._chunk.root_path}: no space left writing {self._path}") from exc
            raise

    def write(self, b: Any) -> int:
        data = memoryview(b).cast("B")
        end = self._f.tell() + len(data)
        grow = max(0, end - self._size)

        def put() -> None:
            done = 0
            while done < len(data):  # a raw file may take fewer bytes than offered
                done += self._f.write(data[done:]) or 0

        self._checked(grow, put)
        self._size = max(self._size, end)
        return len(data)

    def abort(self) -> None:
        """Close, dropping everything written (a refused upload): the file in place is untouched."""
        self._fail()
        self.close()

    def _fail(self) -> None:
        """Drop everything this writer wrote; the file under its final name is untouched."""
        if self._failed:
            return
        self._failed = True
        self._f.close()
        if self._replace:
            def unlink() -> None:
                try:
                    os.unlink(self._target)
                except FileNotFoundError:
                    pass
            self._chunk._release(self._size, unlink)

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self._failed:
                self._f.close()
                if self._replace:
                    self._chunk._release(self._old_size, lambda: os.replace(self._target, self._final))
        finally:
            super().close()
