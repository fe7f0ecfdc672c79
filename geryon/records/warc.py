"""WARC files: records read with `warcio`, and raw records split for loading.

Reading (`iter_records`) goes through warcio, the Webrecorder project's WARC library:
key WARC-Record-ID, value the record's payload (for HTTP responses, the body with the
HTTP headers and transfer encoding removed). Loading (`iter_raw_records`) needs the
records' bytes exactly as stored, which warcio does not give back, so it parses the
framing itself (ISO 28500 section 4: version line, headers, blank line, Content-Length
bytes, CRLF CRLF). Bad framing raises `BadRecord` with the record number and offset.
Not here: decompression (`compression` undoes whole-file and per-record gzip alike).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from geryon.records.badrecords import BadRecord, InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarcRecord:
    number: int
    offset: int
    record_id: str
    rec_type: str
    payload: bytes


def iter_records(stream: BinaryIO, label: str) -> Iterator[WarcRecord]:
    """Every record of a WARC stream (uncompressed, or gzip per record), with its payload.

    Raises:
        BadRecord: a record's header cannot be parsed (not recoverable).
    """
    try:
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise InputError("reading WARC files needs the warcio package (pip install warcio)") from exc
    number = 0
    it = ArchiveIterator(stream)
    try:
        for rec in it:
            rid = rec.rec_headers.get_header("WARC-Record-ID") or f"{label}#{number}"
            payload = rec.content_stream().read()
            offset = it.get_record_offset()  # after the payload: it reads the record to its end
            yield WarcRecord(number, offset, rid, rec.rec_type or "", payload)
            number += 1
    except InputError:
        raise
    except (ArchiveLoadFailed, ValueError, EOFError, OSError) as exc:
        raise BadRecord(f"{label}: bad WARC record {number} (after {number} good records): {exc}",
                        recoverable=False) from exc


@dataclass(frozen=True)
class RawWarcRecord:
    number: int
    offset: int
    data: bytes


def iter_raw_records(stream: BinaryIO, label: str) -> Iterator[RawWarcRecord]:
    """Every record of an uncompressed WARC stream as its stored bytes (headers, block, CRLF CRLF).

    Raises:
        BadRecord: bad framing (not recoverable: the next record cannot be found safely).
    """
    offset = 0
    number = 0
    while True:
        line = stream.readline()
        while line in (b"\r\n", b"\n"):  # stray blank lines between records
            offset += len(line)
            line = stream.readline()
        if not line:
            return
        start = offset
        if not line.startswith(b"WARC/"):
            raise BadRecord(f"{label}: record {number} at byte {start}: no WARC version line "
                            f"(found {line[:40]!r})", recoverable=False)
        parts = [line]
        length = None
        while True:
            h = stream.readline()
            if not h:
                raise BadRecord(f"{label}: record {number} at byte {start}: truncated header",
                                recoverable=False)
            parts.append(h)
            if h in (b"\r\n", b"\n"):
                break
            name, colon, value = h.partition(b":")
            if colon and name.strip().lower() == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    length = -1
        if length is None or length < 0:
            raise BadRecord(f"{label}: record {number} at byte {start}: missing or bad Content-Length",
                            recoverable=False)
        block = stream.read(length)
        if len(block) != length:
            raise BadRecord(f"{label}: record {number} at byte {start}: truncated block "
                            f"({len(block)} of {length} bytes)", recoverable=False)
        parts.append(block)
        end = stream.read(4)
        if end != b"\r\n\r\n":
            raise BadRecord(f"{label}: record {number} at byte {start}: block not followed by CRLF CRLF",
                            recoverable=False)
        parts.append(end)
        data = b"".join(parts)
        yield RawWarcRecord(number, start, data)
        offset = start + len(data)
        number += 1
