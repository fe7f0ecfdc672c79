"""Verified reads: a chunk file read through the block CRCs its manifest records.

`VerifiedFile` serves reads from verified blocks only, so damaged data is never handed to a
map function: a mismatch raises `ChecksumMismatch` naming the file and the block. Files the
manifest does not name (written by other tools) are read unverified. The same verification
runs over any seekable stream (a remote chunk's file, `open_verified_stream`).

Not here: the manifest itself, summing files, checking a whole disk (`geryon.disks.checksum`);
what to do about damage (`geryon.disks.failover` reads a replica; the job driver retries elsewhere).
"""
from __future__ import annotations

import io
import logging
import os
import zlib
from typing import Any, BinaryIO

from geryon.records.badrecords import InputError
from geryon.disks.checksum import BLOCK, ChecksumMismatch, FileSum, manifest_key
from geryon.disks.chunk import SUMS_NAME, within

log = logging.getLogger(__name__)


class VerifiedFile(io.RawIOBase):
    """A chunk file read through its recorded block CRCs: only verified bytes come out.

    Seekable, so the lines reader can read byte ranges; wrap in io.BufferedReader for
    readline. `source` is a local path, or an open seekable binary stream (a remote
    file) whose `size`, when known, is checked on open like a local file's.
    """

    def __init__(self, source: str | BinaryIO, expected: FileSum, label: str, size: int | None = None) -> None:
        super().__init__()
        self._label = label
        self._sum = expected
        if isinstance(source, str):
            self._f: BinaryIO = open(source, "rb")
            size = os.fstat(self._f.fileno()).st_size
        else:
            self._f = source
        if size is not None and size != expected.size:
            self._f.close()
            raise ChecksumMismatch(f"{label}: damaged: {size} bytes, {expected.size} recorded in {SUMS_NAME}")
        self._pos = 0
        self._block_no = -1
        self._block = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self._pos = offset
        elif whence == 1:
            self._pos += offset
        else:
            self._pos = self._sum.size + offset
        self._pos = max(0, self._pos)
        return self._pos

    def _load(self, number: int) -> bytes:
        if number != self._block_no:
            if self._f.tell() != number * BLOCK:
                self._f.seek(number * BLOCK)
            data = self._read_block()
            expected = self._sum.crc32[number] if number < len(self._sum.crc32) else None
            if expected is None or zlib.crc32(data) != expected:
                raise ChecksumMismatch(
                    f"{self._label}: damaged: checksum mismatch in bytes {number * BLOCK}-"
                    f"{number * BLOCK + len(data)} (block {number}); the data is not used")
            self._block_no, self._block = number, data
        return self._block

    def _read_block(self) -> bytes:
        """One block, in as many reads as a stream needs (a socket may return less)."""
        data = self._f.read(BLOCK)
        if len(data) == BLOCK or not data:
            return data
        parts = [data]
        have = len(data)
        while have < BLOCK:
            more = self._f.read(BLOCK - have)
            if not more:
                break
            parts.append(more)
            have += len(more)
        return b"".join(parts)

    def readinto(self, b: Any) -> int:
        if self._pos >= self._sum.size:
            return 0
        number, offset = divmod(self._pos, BLOCK)
        block = self._load(number)
        n = min(len(b), len(block) - offset)
        b[:n] = block[offset:offset + n]
        self._pos += n
        return n

    def readall(self) -> bytes:
        parts = []
        while self._pos < self._sum.size:
            number, offset = divmod(self._pos, BLOCK)
            block = self._load(number)
            parts.append(block[offset:] if offset else block)
            self._pos += len(block) - offset
            if len(block) < BLOCK:
                break
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


def open_verified(root: str, path: str, label: str, manifest: dict[str, FileSum] | None) -> io.BufferedReader | Any:
    """Open a chunk file for reading: verified when the manifest names it, plain otherwise."""
    full = os.path.join(root, path.lstrip("/"))
    if not within(os.path.realpath(root), full):
        raise InputError(f"{label}: {path} leads outside its disk (a symbolic link out): refused")
    expected = manifest.get(manifest_key(path)) if manifest else None
    if expected is None:
        return open(full, "rb")
    return io.BufferedReader(VerifiedFile(full, expected, label), 64 << 10)


def open_verified_stream(raw: BinaryIO, path: str, label: str,
                         manifest: dict[str, FileSum] | None) -> BinaryIO:
    """Wrap an open (remote) file so that only verified bytes come out, when the manifest
    names it; `raw` itself otherwise. Its size is checked now when `raw.size` is known.

    Raises:
        ChecksumMismatch: its size differs from the record (`raw` is closed).
    """
    expected = manifest.get(manifest_key(path)) if manifest else None
    if expected is None:
        return raw
    size = getattr(raw, "size", None)
    return io.BufferedReader(VerifiedFile(raw, expected, label, size if isinstance(size, int) else None),
                             64 << 10)  # type: ignore[return-value]
