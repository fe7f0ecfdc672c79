"""Record readers: turn a split's bytes into (key, value) records.

`file` gives one record per file (key: `DISK/PATH`, the disk's name and the file's path
inside it; value: its text, which must be UTF-8); `bytes` the same with the raw bytes;
`lines` one record per line (key: `DISK/PATH` of its file, value: the line without its
newline). For streaming jobs, `raw_chunks` gives
the bytes a streaming mapper reads on stdin. Not here: compressed and archive formats.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import BinaryIO

from fs.base import FS

from geryon.errors import GeryonError
from geryon.split import FileRange, Split

log = logging.getLogger(__name__)

READ_BLOCK = 4 << 20
"""Bytes read at a time from a large file."""


class InputError(GeryonError):
    """An input file could not be read or decoded."""


def _open(disk_fs: FS, root: str | None, path: str) -> BinaryIO:
    if root is not None:  # a local disk: the plain file, without the fs layer's checks
        return open(os.path.join(root, path.lstrip("/")), "rb")
    return disk_fs.openbin(path)


def _read_range(disk_fs: FS, disk: str, rng: FileRange, root: str | None = None) -> tuple[int, bytes]:
    """Bytes of a line-aligned range, and the file offset they start at: from the first
    line starting in the range, through the end of the last line starting before its end."""
    try:
        with _open(disk_fs, root, rng.path) as f:
            start = rng.start
            if start > 0:
                f.seek(start - 1)
                if f.read(1) != b"\n":
                    start += len(f.readline())  # the partial line belongs to the previous range
            if start >= rng.end:
                return start, b""
            f.seek(start)
            data = f.read(rng.end - start)
            if data and not data.endswith(b"\n"):
                data += f.readline()
            return start, data
    except GeryonError:
        raise
    except Exception as exc:
        raise InputError(f"{disk}:{rng.path.lstrip('/')}: cannot read: {exc}") from exc


def _decode(data: bytes, disk: str, path: str, base: int = 0) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{disk}:{path.lstrip('/')}: not UTF-8 text (byte {base + exc.start}); "
            "use --reader bytes for binary input"
        ) from None


def read_records(disk_fs: FS, split: Split, reader: str, root: str | None = None) -> Iterator[tuple[object, object]]:
    """The records of a split, for Python map functions.

    Args:
        root: the disk's local directory, when it is local (read without the fs layer).
    """
    for rng in split.ranges:
        path = f"{split.disk}/{rng.path.lstrip('/')}"
        if reader == "lines":
            start, data = _read_range(disk_fs, split.disk, rng, root)
            text = _decode(data, split.disk, rng.path, start)
            lines = text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            for line in lines:
                yield path, line
            continue
        _, data = _read_range(disk_fs, split.disk, rng, root)
        if reader == "bytes":
            yield path, data
        else:
            yield path, _decode(data, split.disk, rng.path)


def raw_chunks(disk_fs: FS, split: Split, root: str | None = None) -> Iterator[bytes]:
    """The bytes a streaming mapper reads: every file (or range), each ending in a newline."""
    for rng in split.ranges:
        _, data = _read_range(disk_fs, split.disk, rng, root)
        if data:
            yield data if data.endswith(b"\n") else data + b"\n"
