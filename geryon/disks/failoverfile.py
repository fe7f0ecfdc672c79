"""One copy of a disk, and a file read from whichever copy works: `Copy`, `FailoverFile`.

`FailoverFile` reads from the `FailoverFS`'s active copy and, when that copy fails (dead,
unreachable or damaged: `failover_worthy`), reopens the file on the next copy at the same
offset; a checksum mismatch first re-reads the copy's manifest once (a file rewritten since).

Not here: choosing, opening and switching copies, and every other operation of the disk
(`geryon.disks.failover.FailoverFS`); finding a disk's copies (`geryon.disks.failover.find_copies`).
"""
from __future__ import annotations

import http.client
import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from fs import errors as fserrors
from fs.base import FS

from geryon.disks.checksum import ChecksumMismatch

if TYPE_CHECKING:
    from geryon.disks.failover import FailoverFS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Copy:
    """One copy of a disk: its ndb name, where it lives, and its fs (None: not live now)."""

    name: str
    where: str                   # NODE!CHUNK, or the local directory
    fs: FS | None
    root: str | None = None      # the local directory, for a local copy
    why: str = ""                # why `fs` is None

    def role(self, disk: str) -> str:
        return "master" if self.name == disk else f"replica {self.name}"


def failover_worthy(exc: BaseException) -> bool:
    """Whether an error says this copy is dead or damaged (rather than the request wrong)."""
    if isinstance(exc, (ChecksumMismatch, fserrors.RemoteConnectionError, http.client.HTTPException)):
        return True
    if isinstance(exc, fserrors.ResourceNotFound):
        return str(exc).startswith("no chunk ")       # the node no longer serves the chunk
    if isinstance(exc, fserrors.ResourceError):
        return False
    return isinstance(exc, (fserrors.OperationFailed, OSError))


class FailoverFile(io.RawIOBase):
    """A file read from one copy, moving to the next at the same offset if that copy fails."""

    def __init__(self, fs: FailoverFS, path: str) -> None:
        super().__init__()
        self._fs, self.name, self.mode = fs, path, "rb"
        self._pos = 0
        self._failures: dict[int, BaseException] = {}
        self._rechecked: set[int] = set()
        self._index, self._f, self._size = self._open()

    def _open_at(self, i: int, copy: Copy) -> tuple[int, BinaryIO, int | None]:
        f, size = self._fs._open_copy(i, copy, self.name)
        try:
            if self._pos:
                f.seek(self._pos)
        except BaseException:
            f.close()
            raise
        return i, f, size

    def _open(self) -> tuple[int, BinaryIO, int | None]:
        return self._fs._try(self._open_at, self._failures)

    def _failed(self, exc: BaseException) -> None:
        """The copy in use failed mid-file: check once against a fresh manifest (the file may
        have been rewritten), else carry on from the same offset on the next copy."""
        try:
            self._f.close()
        except Exception:                           # the copy is already broken
            pass
        i = self._index
        if isinstance(exc, ChecksumMismatch) and i not in self._rechecked:
            self._rechecked.add(i)
            self._fs.forget_manifest(i)
            try:
                self._index, self._f, self._size = self._open_at(i, self._fs.copies[i])
                return
            except Exception as again:
                if not failover_worthy(again):
                    raise
                exc = again
        self._failures[i] = exc
        self._fs._switch(i, exc)
        self._index, self._f, self._size = self._open()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        # io.RawIOBase's default raises NotImplementedError; a file's contract is an OSError.
        raise io.UnsupportedOperation(f"{self.name}: opened for reading")

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        while True:
            try:
                self._pos = self._f.seek(offset, whence)
                return self._pos
            except Exception as exc:
                if not failover_worthy(exc):
                    raise
                self._failed(exc)

    def readinto(self, b: Any) -> int:
        from geryon.net.connection import NodeUnavailable

        while True:
            try:
                n = self._f.readinto(b)  # type: ignore[attr-defined]
                if not n and len(b) and self._size is not None and self._pos < self._size:
                    raise NodeUnavailable(f"connection lost after {self._pos} of {self._size} bytes")
                self._pos += n or 0
                return n or 0
            except Exception as exc:
                if not failover_worthy(exc):
                    raise
                self._failed(exc)

    def readall(self) -> bytes:
        parts = []
        while block := self.read(1 << 20):
            parts.append(block)
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()
