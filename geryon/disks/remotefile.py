"""A `RemoteFS` file: read as one streaming GET, written as one PUT on close.

`RemoteReader` streams a chunk file from its node (the GET re-issued with `Range` after a
seek); `RemoteWriter` spools what is written here (in memory, then on local disk) and sends
it in one PUT when it is closed, so the node commits it whole or not at all.

Not here: the filesystem they belong to, its requests and errors (`geryon.disks.remote`).
"""
from __future__ import annotations

import http.client
import io
import logging
import tempfile
from typing import TYPE_CHECKING, Any

from fs.mode import Mode

from geryon.defaults import DEFAULT_SPOOL
from geryon.net.connection import raise_for

if TYPE_CHECKING:
    from geryon.disks.remote import RemoteFS

log = logging.getLogger(__name__)

DEFAULT_READ_BLOCK = 1 << 20
"""Bytes read from the socket at a time when copying a remote file."""


class RemoteReader(io.RawIOBase):
    """A remote file opened for reading: one streaming GET, re-issued with Range after a seek."""

    def __init__(self, fs: RemoteFS, path: str) -> None:
        super().__init__()
        self._fs, self.name, self.mode = fs, path, "rb"
        self._pos = 0
        self._size: int | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._rconn: http.client.HTTPConnection | None = None
        self._start()            # fails now (ResourceNotFound, FileExpected) rather than later

    def _start(self) -> None:
        headers = {"Range": f"bytes={self._pos}-"} if self._pos else {}
        resp, conn = self._fs._conn.open("GET", self._fs._file_target(self.name), headers=headers)
        if resp.status == 416:                           # at or past the end
            resp.read()
            self._fs._conn.release(resp, conn)
            self._resp = None
            return
        if resp.status >= 300:
            body = resp.read()
            self._fs._conn.release(resp, conn)
            raise_for(resp.status, body, self._fs.url, self.name)
        if self._size is None:
            length = resp.getheader("Content-Range", "").rpartition("/")[2] or resp.getheader("Content-Length")
            self._size = int(length) if length and length.isdigit() else None
        self._resp, self._rconn = resp, conn

    def _drop(self) -> None:
        if self._resp is not None and self._rconn is not None:
            self._fs._conn.release(self._resp, self._rconn)
        self._resp = self._rconn = None

    @property
    def size(self) -> int | None:
        """The file's size, as the node reported it (None if it did not)."""
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            new = offset
        elif whence == 1:
            new = self._pos + offset
        elif whence == 2:
            if self._size is None:
                self._size = self._fs.getinfo(self.name, ["details"]).size
            new = self._size + offset
        else:
            raise ValueError("bad whence")
        if new < 0:
            raise ValueError("negative seek position")
        if new != self._pos:
            self._drop()
            self._pos = new
        return self._pos

    def _response(self) -> http.client.HTTPResponse | None:
        if self._resp is None:
            if self._size is not None and self._pos >= self._size:
                return None
            self._start()
        return self._resp

    def readinto(self, b: Any) -> int:
        resp = self._response()
        if resp is None:
            return 0
        n = resp.readinto(b)
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        resp = self._response()
        if resp is None:
            return b""
        data = resp.read(size)          # no intermediate buffer: http.client hands us bytes
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        chunks = []
        while True:
            block = self.read(DEFAULT_READ_BLOCK)
            if not block:
                return b"".join(chunks)
            chunks.append(block)

    def writable(self) -> bool:
        return False

    def write(self, b: Any) -> int:
        raise io.UnsupportedOperation("not writable")

    def truncate(self, size: int | None = None) -> int:
        raise io.UnsupportedOperation("not writable")

    def close(self) -> None:
        if not self.closed:
            self._drop()
        super().close()


class RemoteWriter(io.RawIOBase):
    """A remote file opened for writing: spooled here, sent in one PUT on close."""

    def __init__(self, fs: RemoteFS, path: str, mode: Mode, initial: bytes) -> None:
        super().__init__()
        self._fs, self.name, self._mode = fs, path, mode
        self.mode = mode.to_platform_bin()
        self._buf = tempfile.SpooledTemporaryFile(max_size=DEFAULT_SPOOL)
        self._buf.write(initial)
        if not mode.appending:
            self._buf.seek(0)

    def readable(self) -> bool:
        return self._mode.reading

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._buf.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0 and offset < 0:
            raise ValueError("negative seek position")
        return self._buf.seek(offset, whence)

    def readinto(self, b: Any) -> int:
        if not self._mode.reading:
            raise io.UnsupportedOperation("not readable")
        return self._buf.readinto(b)

    def write(self, b: Any) -> int:
        if self._mode.appending:
            self._buf.seek(0, 2)
        return self._buf.write(b)

    def truncate(self, size: int | None = None) -> int:
        here = self._buf.tell()
        size = here if size is None else size
        self._buf.seek(0, 2)
        end = self._buf.tell()
        if size > end:
            self._buf.write(b"\0" * (size - end))
        else:
            self._buf.truncate(size)
        self._buf.seek(here)
        return size

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._buf.seek(0)
            self._fs.put_file(self.name, self._buf)  # type: ignore[arg-type]
        finally:
            self._buf.close()
            super().close()
