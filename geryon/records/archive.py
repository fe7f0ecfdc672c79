"""Tar archives, streamed: every member of a tar (any compression) in one pass.

The seed's `gettarentry`: members are read in order from a non-seekable stream
(tarfile's `r|` mode), so a compressed archive is never unpacked to disk or read twice.
Only regular files come out; directories, links and devices are passed over. A truncated
or corrupt archive raises `BadRecord` naming the member and the byte offset, including an
archive cut at a member boundary (its end-of-archive blocks are missing).
Not here: decompression (see `compression`).
"""
from __future__ import annotations

import io
import logging
import posixpath
import tarfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from geryon.records.badrecords import BadRecord

log = logging.getLogger(__name__)

_TAIL = 64 << 10
"""Bytes of the stream kept to check the end-of-archive marker (tarfile reads 10 KiB records)."""


class _Tail(io.RawIOBase):
    """A stream that remembers its last bytes, to check where the archive ended."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self._stream = stream
        self.end = 0
        self.tail = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        data = self._stream.read(n)
        self.end += len(data)
        self.tail = (self.tail + data)[-_TAIL:]
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def zeros_at(self, offset: int) -> bool:
        """Whether the 512 bytes at `offset` were read and are all zero (end of archive)."""
        start = offset - (self.end - len(self.tail))
        if start < 0 or start + tarfile.BLOCKSIZE > len(self.tail):
            return False
        return self.tail[start:start + tarfile.BLOCKSIZE] == bytes(tarfile.BLOCKSIZE)


def safe_member_path(name: str) -> str | None:
    """A member name as a relative path that stays inside its directory, or None."""
    norm = posixpath.normpath(name.replace("\\", "/")).lstrip("/")
    if norm in ("", ".") or norm == ".." or norm.startswith("../"):
        return None
    return norm


def iter_members(stream: BinaryIO, label: str) -> Iterator[tuple[tarfile.TarInfo, bytes]]:
    """(member, bytes) of every regular file of a tar stream, in archive order.

    Raises:
        BadRecord: the archive is truncated or corrupt (not recoverable: the rest is lost).
    """
    tail = _Tail(stream)
    number = 0
    name = "(header)"
    offset = 0
    try:
        with tarfile.open(fileobj=tail, mode="r|") as tf:  # type: ignore[call-overload]
            for member in tf:
                name, offset = member.name, member.offset
                if not member.isfile():
                    continue
                f = tf.extractfile(member)
                data = f.read() if f is not None else b""
                if len(data) != member.size:
                    raise tarfile.ReadError("unexpected end of data")
                yield member, data
                number += 1
                name = "(the header after it)"
                offset = member.offset_data + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            end = tf.offset
        if not tail.zeros_at(end):
            raise tarfile.ReadError(f"no end-of-archive marker at byte {end}")
    except (tarfile.TarError, EOFError) as exc:
        raise BadRecord(
            f"{label}: truncated or corrupt tar after {number} members, at "
            f"{name if name.startswith('(') else repr(name)} (byte {offset}): {exc}", recoverable=False) from exc
