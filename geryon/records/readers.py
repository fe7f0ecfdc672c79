"""Record readers: turn a split's files into (key, value) records.

One protocol, several readers, chosen by name (`--reader`) or, with `auto`, per file by
its extension (`reader_for`):

| reader | one record per | key | value |
|---|---|---|---|
| `file` (default) | file | `DISK/PATH` | its text (UTF-8) |
| `bytes` | file | `DISK/PATH` | its bytes |
| `lines` | line | `DISK/PATH` | the line, without its newline |
| `mbox` | mail message | its Message-ID, else `DISK/PATH#N` | the message text |
| `tar` | regular member | `DISK/ARCHIVE/MEMBER` | its text, or bytes when not UTF-8 |
| `warc` | WARC record | its WARC-Record-ID | its payload (bytes) |

Two more read the parts one step of a multi-step job wrote for the next (`geryon.mapreduce.steps`;
never a user's `--reader`): `pairs`, the engine's msgpack blocks (each record as the step's
reduce yielded it: tuples come back as lists, keys as tuples), and `keyvalue` (Hadoop's
KeyValueTextInputFormat), a streaming step's `key<TAB>value` lines split at the first tab.

Every reader reads `.gz`, `.bz2`, `.xz` and `.zst` files decompressed (`compression`);
such files, and every file of a reader other than `lines`, are read whole from their first
byte, so the planner never cuts them (`may_cut`). Files a chunk's checksum manifest names
are verified as they are read (`checksum`), local or remote (the manifest fetched once per
split through the disk's fs). A malformed record is a `BadRecord` naming the
file and position; given `on_bad` (a `SkipBudget`), readers skip it and go on.
The `file` and `bytes` readers hold a file whole, so a file larger than the job's sort
budget is refused before the job starts (`check_record_sizes`: one line naming `--reader
lines`), and a compressed one when its decompressed bytes pass it; `lines` reads a split
in blocks of READ_BLOCK bytes, never whole. For streaming jobs, `raw_chunks` gives the bytes a streaming mapper reads on stdin, and
`copy_range` the same bytes as a file of the task's input view (`geryon.mapreduce.inputview`).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from itertools import repeat
from dataclasses import dataclass
from typing import BinaryIO, Union

from fs.base import FS

from geryon.records.badrecords import BadRecord, InputError
from geryon.disks.checksum import FileSum, read_manifest
from geryon.disks.verified import open_verified, open_verified_stream
from geryon.records.compression import codec_of, open_decompressed, strip_codec
from geryon.errors import GeryonError
from geryon.disks.chunk import describe_size
from geryon.records.split import FileRange, Split

log = logging.getLogger(__name__)

__all__ = ["InputError", "BadRecord", "READERS", "read_records", "raw_chunks", "reader_for", "may_cut",
           "may_cut_files", "split_manifest", "copy_range", "check_record_sizes"]

READ_BLOCK = 4 << 20
"""Bytes read at a time from a large or compressed file."""

READERS = ("file", "lines", "bytes", "mbox", "tar", "warc", "auto")
"""Reader names, for `--reader`; `auto` picks one per file by its extension."""

LINE_EXTENSIONS = (".txt", ".log", ".csv", ".tsv", ".jsonl", ".ndjson")
"""Extensions `auto` reads one line at a time."""

Record = tuple[object, object]
Item = Union[Record, BadRecord]
OnBad = Callable[[BadRecord], None]


def reader_for(reader: str, path: str) -> str:
    """The reader that reads `path`: `reader` itself, or for `auto` the one its extension names."""
    if reader != "auto":
        return reader
    base = strip_codec(path).lower()
    name = os.path.basename(base)
    if base.endswith(".tar"):
        return "tar"
    if base.endswith((".mbox", ".mbx")) or name == "mbox":
        return "mbox"
    if base.endswith(".warc"):
        return "warc"
    if base.endswith(LINE_EXTENSIONS):
        return "lines"
    return "file"


def may_cut(reader: str, path: str) -> bool:
    """Whether a file may be cut into byte ranges: line records of an uncompressed file."""
    return reader_for(reader, path) == "lines" and codec_of(path) is None


def may_cut_files(reader: str, paths: list[str]) -> bool:
    """Whether the planner may cut a disk's large files: `may_cut` holds for every file."""
    return all(may_cut(reader, p) for p in paths)


@dataclass(frozen=True)
class _Source:
    disk: str
    path: str

    @property
    def key(self) -> str:
        return f"{self.disk}/{self.path.lstrip('/')}"

    @property
    def label(self) -> str:
        return f"{self.disk}:{self.path.lstrip('/')}"


def _manifest(disk_fs: FS, root: str | None, split: Split) -> dict[str, FileSum] | None:
    """The checksums to verify a split's reads against: the local chunk's manifest, or the
    entries for the split's files of a remote chunk's, fetched through its fs (once per
    split); None for a disk that verifies its own reads (`verifies_reads`, as
    `geryon.disks.failover` does) or has no manifest."""
    if root is not None:
        return read_manifest(root)
    fetch = getattr(disk_fs, "manifest", None)
    if getattr(disk_fs, "verifies_reads", False) or not callable(fetch):
        return None
    disk = split.disk
    try:
        return fetch(paths=sorted({r.path for r in split.ranges}))  # type: ignore[no-any-return]
    except GeryonError:
        raise
    except Exception as exc:
        raise InputError(f"{disk}: cannot read its checksum manifest: {exc}") from exc


def _open(disk_fs: FS, root: str | None, src: _Source, manifest: dict[str, FileSum] | None) -> BinaryIO:
    try:
        if root is not None:  # a local disk: the plain file, without the fs layer's checks
            return open_verified(root, src.path, src.label, manifest)  # type: ignore[no-any-return]
        return open_verified_stream(disk_fs.openbin(src.path), src.path, src.label, manifest)
    except GeryonError:
        raise
    except Exception as exc:
        raise InputError(f"{src.label}: cannot read: {exc}") from exc


def _not_text(src: _Source, offset: int | str, what: str = "") -> BadRecord:
    return BadRecord(f"{src.label}: {what}not UTF-8 text (byte {offset}); use --reader bytes for binary input")


def _decoded_lines(data: bytes, base: int, src: _Source) -> Iterator[Item]:
    """The lines of `data` (whole lines, starting at file byte `base`) as records."""
    key = src.key
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        yield from _lines_one_by_one(data, base, src)
        return
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        yield key, line


def _lines_one_by_one(data: bytes, base: int, src: _Source) -> Iterator[Item]:
    pos = 0
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    for raw in raw_lines:
        try:
            yield src.key, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield _not_text(src, base + pos + exc.start)
        pos += len(raw) + 1


def _range_blocks(f: BinaryIO, rng: FileRange) -> Iterator[tuple[int, bytes]]:
    """The bytes of a line-aligned range in blocks of about READ_BLOCK bytes, each ending
    at a line end, with the file offset each starts at: from the first line starting in
    the range, through the end of the last line starting before its end."""
    start = rng.start
    if start > 0:
        f.seek(start - 1)
        if f.read(1) != b"\n":
            start += len(f.readline())  # the partial line belongs to the previous range
    if start >= rng.end:
        return
    f.seek(start)
    left, base, rest = rng.end - start, start, b""
    while left > 0:
        block = f.read(min(left, READ_BLOCK))
        if not block:
            break  # the file is shorter than planned
        left -= len(block)
        if rest:
            block, rest = rest + block, b""
        if left == 0:
            if not block.endswith(b"\n"):
                block += f.readline()  # the last line starting in the range runs past its end
            yield base, block
            return
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            rest = block  # a line longer than a block: read on
            continue
        rest = block[cut:]
        yield base, block[:cut]
        base += cut
    if rest:
        yield base, rest


def _line_blocks(f: BinaryIO, rng: FileRange, compressed: bool) -> Iterator[tuple[int, bytes]]:
    """Blocks of whole lines of a range (a compressed file: all of it), with the offset each starts at."""
    if not compressed:  # in blocks: a split is never held whole, decoded, and as lines at once
        yield from _range_blocks(f, rng)
        return
    base = 0
    rest = b""
    while True:
        block = f.read(READ_BLOCK)
        if not block:
            break
        block = rest + block
        cut = block.rfind(b"\n") + 1
        rest = block[cut:]
        yield base, block[:cut]
        base += cut
    if rest:
        yield base, rest


def _read_lines(f: BinaryIO, rng: FileRange, src: _Source, compressed: bool, limit: int) -> Iterator[Item]:
    for base, data in _line_blocks(f, rng, compressed):
        yield from _decoded_lines(data, base, src)


def _line_parts(f: BinaryIO, rng: FileRange, src: _Source, compressed: bool) -> Iterator[Iterator[Item] | BadRecord]:
    """`_read_lines` for `read_records`, a block at a time: a block that decodes comes as one
    iterator of (key, line) pairs made in C (`zip`), with no per-line Python step; one that does
    not, line by line (each good line an iterator of one pair, each bad one a BadRecord)."""
    key = src.key
    for base, data in _line_blocks(f, rng, compressed):
        try:
            lines = data.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            for item in _lines_one_by_one(data, base, src):
                yield item if isinstance(item, BadRecord) else iter((item,))
            continue
        if lines[-1] == "":
            lines.pop()
        yield zip(repeat(key), lines)


def _whole(f: BinaryIO, src: _Source, limit: int) -> bytes:
    """A file's bytes, refused past `limit` (a compressed file's size is known only by reading it)."""
    data = f.read(limit + 1) if limit else f.read()
    if limit and len(data) > limit:
        raise record_too_large(src.label, len(data), limit, exact=False)
    return data


def record_too_large(label: str, size: int, limit: int, exact: bool = True) -> InputError:
    """The one line for a file too large to be one record (`file` and `bytes` read files whole)."""
    what = describe_size(size) if exact else f"more than {describe_size(limit)}"
    return InputError(f"{label}: {what} is too large for one record (the file and bytes readers hold a "
                      f"file whole; a record may take at most the --sort-budget, {describe_size(limit)}): "
                      f"use --reader lines, or split the file (geryon load)")


def check_record_sizes(reader: str, disk: str, files: list[tuple[str, int]], limit: int) -> None:
    """Refuse, before any task runs, a file that `reader` would read as one record larger than `limit`.

    Raises:
        InputError: one line naming the file and the reader to use.
    """
    for path, size in files:
        if size > limit and reader_for(reader, path) in ("file", "bytes"):
            raise record_too_large(f"{disk}:{path.lstrip('/')}", size, limit)


def _read_file(f: BinaryIO, rng: FileRange, src: _Source, compressed: bool, limit: int) -> Iterator[Item]:
    data = _whole(f, src, limit)
    try:
        yield src.key, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield _not_text(src, exc.start)


def _read_bytes(f: BinaryIO, rng: FileRange, src: _Source, compressed: bool, limit: int) -> Iterator[Item]:
    yield src.key, _whole(f, src, limit)


def _read_mbox(f: BinaryIO, rng: FileRange, src: _Source, compressed: bool, limit: int) -> Iterator[Item]:
    from geryon.records.mbox import iter_raw_messages, message_body, message_id

    for msg in iter_raw_messages(f):
        if not msg.is_message:
            yield BadRecord(f"{src.label}: byte {msg.offset}: text before the first 'From ' line (not mbox)")
            continue
        body = message_body(msg.data)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield BadRecord(f"{src.label}: message {msg.number} at byte {msg.offset}: not UTF-8 text "
                            f"(byte {exc.start} of the message)")
            continue
        yield message_id(body) or f"{src.key}#{msg.number}", text


def _read_tar(f: BinaryIO, rng: FileRange, src: _Source, compressed: bool, limit: int) -> Iterator[Item]:
    from geryon.records.archive import iter_members

    for member, data in iter_members(f, src.label):
        try:
            value: object = data.decode("utf-8")
        except UnicodeDecodeError:
            value = data
        yield f"{src.key}/{member.name}", value


def _read_warc(f: BinaryIO, rng: FileRange, src: _Source, compressed: bool, limit: int) -> Iterator[Item]:
    from geryon.records.warc import iter_records

    for rec in iter_records(f, src.label):
        yield rec.record_id, rec.payload


def _read_pairs(f: BinaryIO, rng: FileRange, src: _Source, compressed: bool, limit: int) -> Iterator[Item]:
    import msgpack

    unpacker = msgpack.Unpacker(use_list=True, raw=False, max_buffer_size=max(limit, READ_BLOCK) * 2,
                                strict_map_key=False, unicode_errors="surrogateescape")
    try:
        while True:
            block = f.read(READ_BLOCK)
            if not block:
                break
            unpacker.feed(block)
            for item in unpacker:
                single, keys, values = item
                if not single:
                    values = [v for vs in values for v in vs]
                for key, value in zip(keys, values):
                    yield _frozen(key), value
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        yield BadRecord(f"{src.label}: not a step's records ({exc})", recoverable=False)


def _frozen(obj: object) -> object:
    if type(obj) is list:
        return tuple(_frozen(x) for x in obj)
    return obj


def _read_keyvalue(f: BinaryIO, rng: FileRange, src: _Source, compressed: bool, limit: int) -> Iterator[Item]:
    for item in _read_lines(f, rng, src, compressed, limit):
        if isinstance(item, BadRecord):
            yield item
            continue
        key, _, value = str(item[1]).partition("\t")
        yield key, value


STEP_READERS = ("pairs", "keyvalue")
"""Readers of a step's parts, for the next step (not a `--reader` choice)."""

_READ: dict[str, Callable[[BinaryIO, FileRange, _Source, bool, int], Iterator[Item]]] = {
    "file": _read_file, "bytes": _read_bytes, "lines": _read_lines,
    "mbox": _read_mbox, "tar": _read_tar, "warc": _read_warc,
    "pairs": _read_pairs, "keyvalue": _read_keyvalue,
}


def read_records(disk_fs: FS, split: Split, reader: str, root: str | None = None,
                 on_bad: OnBad | None = None, max_record: int = 0) -> Iterator[tuple[object, object]]:
    """The records of a split, for Python map functions.

    Args:
        root: the disk's local directory, when it is local (read without the fs layer,
            verified against the chunk's checksum manifest when it has one).
        on_bad: called with each malformed record instead of failing (it may raise to
            fail after all, as `SkipBudget` does past its limit); after an unrecoverable
            one, the rest of that file is skipped.
        max_record: the largest file the `file` and `bytes` readers read whole (0: no limit;
            a job passes its sort budget).
    Raises:
        BadRecord: a malformed record, when `on_bad` is None.
        ChecksumMismatch: damaged chunk data (never skipped).
        InputError: a file cannot be read.
    """
    if reader not in _READ and reader != "auto":
        raise InputError(f"unknown reader {reader!r} (choose from {', '.join(READERS)})")
    manifest = _manifest(disk_fs, root, split)
    for rng in split.ranges:
        kind = reader_for(reader, rng.path)
        compressed = codec_of(rng.path) is not None
        if rng.start > 0 and (compressed or kind != "lines"):
            continue  # read whole by the range that holds the file's first byte
        src = _Source(split.disk, rng.path)
        f = _open(disk_fs, root, src, manifest)
        try:
            if compressed:
                f = open_decompressed(f, rng.path, src.label)
            if kind == "lines":      # the per-line path: whole blocks of pairs from the reader
                for part in _line_parts(f, rng, src, compressed):
                    if isinstance(part, BadRecord):
                        if on_bad is None:
                            raise part
                        on_bad(part)
                        continue
                    yield from part
                continue
            for item in _READ[kind](f, rng, src, compressed, max_record):
                if isinstance(item, BadRecord):
                    if on_bad is None:
                        raise item
                    on_bad(item)
                    continue
                yield item
        except BadRecord as bad:
            # A recoverable one here was raised by on_bad itself (over its limit): fail.
            # An unrecoverable one was raised by the reader: the rest of the file is lost.
            if on_bad is None or bad.recoverable:
                raise
            on_bad(bad)
        except GeryonError:
            raise
        except (OSError, EOFError) as exc:
            raise InputError(f"{src.label}: cannot read: {exc}") from exc
        finally:
            f.close()


def raw_chunks(disk_fs: FS, split: Split, root: str | None = None) -> Iterator[bytes]:
    """The bytes a streaming mapper reads: every file (or range), each ending in a newline.

    Compressed files are decompressed; chunk files are verified when the chunk has a manifest.
    """
    manifest = _manifest(disk_fs, root, split)
    for rng in split.ranges:
        compressed = codec_of(rng.path) is not None
        if compressed and rng.start > 0:
            continue
        src = _Source(split.disk, rng.path)
        f = _open(disk_fs, root, src, manifest)
        try:
            if compressed:
                f = open_decompressed(f, rng.path, src.label)
                last = b"\n"
                while True:
                    block = f.read(READ_BLOCK)
                    if not block:
                        break
                    last = block[-1:]
                    yield block
                if last != b"\n":
                    yield b"\n"
                continue
            last = b"\n"
            for _, data in _range_blocks(f, rng):
                last = data[-1:]
                yield data
            if last != b"\n":
                yield b"\n"
        except GeryonError:
            raise
        except (OSError, EOFError) as exc:
            raise InputError(f"{src.label}: cannot read: {exc}") from exc
        finally:
            f.close()


def split_manifest(disk_fs: FS, split: Split, root: str | None = None) -> dict[str, FileSum] | None:
    """The checksums a split's reads are verified against (None: the disk has none)."""
    return _manifest(disk_fs, root, split)


def copy_range(disk_fs: FS, split: Split, rng: FileRange, dst: BinaryIO, root: str | None = None,
               manifest: dict[str, FileSum] | None = None) -> int:
    """Write the bytes of one range of a split to `dst`, verified; return how many.

    A range the planner cut from a larger file gives its whole lines (those starting in
    it: the bytes `raw_chunks` feeds, without the newline it adds to an unterminated
    last line); a whole file gives its raw bytes (a compressed file stays compressed).
    Streamed in blocks, so a large file is never held whole.

    Raises:
        InputError: the file cannot be read (ChecksumMismatch: it is damaged).
    """
    src = _Source(split.disk, rng.path)
    f = _open(disk_fs, root, src, manifest)
    written = 0
    try:
        start = rng.start
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                start += len(f.readline())  # the partial line belongs to the previous range
        if start >= rng.end:
            return 0
        f.seek(start)
        left, last = rng.end - start, b"\n"
        while left > 0:
            block = f.read(min(left, READ_BLOCK))
            if not block:
                break
            dst.write(block)
            written += len(block)
            left -= len(block)
            last = block[-1:]
        if left == 0 and last != b"\n":
            tail = f.readline()  # the last line starting in the range runs past its end
            dst.write(tail)
            written += len(tail)
        return written
    except GeryonError:
        raise
    except (OSError, EOFError) as exc:
        raise InputError(f"{src.label}: cannot read: {exc}") from exc
    finally:
        f.close()
