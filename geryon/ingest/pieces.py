"""Load sources cut at record boundaries: the pieces `geryon load` packs into chunks.

A source is a file or a directory. A directory gives one piece per file (whole files,
stored as they are, compressed or not), except that a file larger than a chunk is cut by
its own format, as a file source is. A file source is read decompressed and cut into its
records: lines (runs of whole lines, which the packer may cut again at any newline),
mbox messages, tar members (stored as files at their member paths) or WARC records.
Not here: packing pieces into chunks (see `load`).
"""
from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from geryon.records.badrecords import BadRecord
from geryon.disks.chunk import is_internal
from geryon.records.compression import open_decompressed, strip_codec
from geryon.errors import GeryonError

log = logging.getLogger(__name__)

FORMATS = ("auto", "lines", "file", "mbox", "tar", "warc")
"""How a file source is cut: by its extension, or as named."""

LINE_BLOCK = 1 << 20
"""Bytes of whole lines in one lines piece."""


@dataclass(frozen=True)
class Piece:
    """Bytes to store at `dest` in a chunk: one record, or (lines) a run of whole lines."""

    dest: str
    data: bytes
    label: str  # where it came from, for messages: source, record and byte offset
    splittable: bool = False  # lines: the packer may cut it after any newline


class _Counting(io.RawIOBase):
    """A source file that reports the bytes read from it (progress)."""

    def __init__(self, f: BinaryIO, on_bytes: Callable[[int], None]) -> None:
        super().__init__()
        self._f = f
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._f.readinto(b)  # type: ignore[attr-defined]
        if n:
            self._on_bytes(n)
        return n or 0

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


def format_of(path: str) -> str:
    """How a file source is cut, by its extension."""
    base = strip_codec(path).lower()
    if base.endswith(".tar"):
        return "tar"
    if base.endswith((".mbox", ".mbx")) or os.path.basename(base) == "mbox":
        return "mbox"
    if base.endswith(".warc"):
        return "warc"
    return "lines"


_READER_OF = {"lines": "lines", "mbox": "mbox", "warc": "warc", "tar": "file", "file": "file"}


def records_of(sources: Sequence[str], fmt: str = "auto") -> str:
    """The reader that gives back the records a load of `sources` stores ("" when they differ).

    Lines, mbox and WARC sources are stored as runs of their records (read back with the
    reader of that name); tar members and whole files as files (`file`). A directory is
    stored file by file: its files' own format when one is named, else `file`.
    """
    kinds = set()
    for src in sources:
        if os.path.isdir(src):
            kinds.add(_READER_OF.get(fmt, "file") if fmt != "auto" else "file")
        else:
            kinds.add(_READER_OF.get(format_of(src) if fmt == "auto" else fmt, "file"))
    return kinds.pop() if len(kinds) == 1 else ""


def iter_pieces(src: str, chunk_size: int, fmt: str = "auto", prefix: str = "",
                on_bytes: Callable[[int], None] | None = None, exclude: Sequence[str] = ()) -> Iterator[Piece]:
    """The pieces of one source (file or directory), in a stable order.

    Args:
        prefix: a directory in the chunk to put the source's files under ("" for the root).
        on_bytes: called with the count of source bytes as they are read.
        exclude: paths a directory walk passes over (where the chunks are being made).
    """
    tick = on_bytes or (lambda n: None)
    if os.path.isdir(src):
        skip = {os.path.realpath(p) for p in exclude}
        yield from _directory_pieces(src, chunk_size, fmt, prefix, tick, skip)
    elif os.path.isfile(src):
        dest = _join(prefix, os.path.basename(src))
        yield from _file_pieces(src, dest, fmt, tick)
    else:
        raise GeryonError(f"{src}: no such file or directory")


def _join(prefix: str, name: str) -> str:
    return f"{prefix.strip('/')}/{name}".lstrip("/") if prefix else name


def _directory_pieces(root: str, chunk_size: int, fmt: str, prefix: str,
                      tick: Callable[[int], None], skip: set[str]) -> Iterator[Piece]:
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not is_internal(d)
                         and os.path.realpath(os.path.join(dirpath, d)) not in skip)
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            if is_internal(name) or os.path.realpath(path) in skip:
                continue  # a chunk's own metadata is not data (loading a chunk disk copies its files)
            if not os.path.isfile(path) or os.path.islink(path):
                log.info("%s: not a regular file, not loaded", path)
                continue
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            dest = _join(prefix, rel)
            size = os.path.getsize(path)
            if size > chunk_size:
                yield from _file_pieces(path, dest, fmt if fmt != "file" else "auto", tick)
                continue
            with open(path, "rb") as f:
                data = f.read()
            tick(len(data))
            yield Piece(dest, data, path)


def _file_pieces(path: str, dest: str, fmt: str, tick: Callable[[int], None]) -> Iterator[Piece]:
    kind = format_of(path) if fmt == "auto" else fmt
    if kind == "file":
        with open(path, "rb") as f:
            data = f.read()
        tick(len(data))
        yield Piece(dest, data, path)
        return
    dest = strip_codec(dest)
    raw = _Counting(open(path, "rb"), tick)  # type: ignore[arg-type]
    stream = open_decompressed(io.BufferedReader(raw, 1 << 20), path, path)  # type: ignore[arg-type]
    try:
        if kind == "lines":
            yield from _line_pieces(stream, dest, path)
        elif kind == "mbox":
            yield from _mbox_pieces(stream, dest, path)
        elif kind == "tar":
            yield from _tar_pieces(stream, dest, path)
        elif kind == "warc":
            yield from _warc_pieces(stream, dest, path)
        else:
            raise GeryonError(f"unknown format {kind!r} (choose from {', '.join(FORMATS)})")
    finally:
        stream.close()


def _line_pieces(stream: BinaryIO, dest: str, label: str) -> Iterator[Piece]:
    offset = 0
    rest = b""
    while True:
        block = stream.read(LINE_BLOCK)
        if not block:
            break
        block = rest + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:  # a line longer than the block: keep reading
            rest = block
            continue
        rest = block[cut:]
        yield Piece(dest, block[:cut], f"{label}: byte {offset}", splittable=True)
        offset += cut
    if rest:
        yield Piece(dest, rest, f"{label}: byte {offset}", splittable=True)


def _mbox_pieces(stream: BinaryIO, dest: str, label: str) -> Iterator[Piece]:
    from geryon.records.mbox import iter_raw_messages

    for msg in iter_raw_messages(stream):
        if not msg.is_message:
            raise BadRecord(f"{label}: byte {msg.offset}: text before the first 'From ' line (not mbox)")
        # Each stored message ends in a blank line, so the next From_ line starts a message.
        data = msg.data
        if not data.endswith(b"\n\n"):
            data += b"\n" if data.endswith(b"\n") else b"\n\n"
        yield Piece(dest, data, f"{label}: message {msg.number} at byte {msg.offset}")


def _tar_pieces(stream: BinaryIO, dest: str, label: str) -> Iterator[Piece]:
    from geryon.records.archive import iter_members, safe_member_path

    for member, data in iter_members(stream, label):
        rel = safe_member_path(member.name)
        if rel is None:
            raise GeryonError(f"{label}: member {member.name!r} would be stored outside the chunk")
        yield Piece(_join(os.path.dirname(dest) if "/" in dest else "", rel), data,
                    f"{label}: member {member.name}")


def _warc_pieces(stream: BinaryIO, dest: str, label: str) -> Iterator[Piece]:
    from geryon.records.warc import iter_raw_records

    for rec in iter_raw_records(stream, label):
        yield Piece(dest, rec.data, f"{label}: record {rec.number} at byte {rec.offset}")

