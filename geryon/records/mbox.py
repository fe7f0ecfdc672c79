"""Mbox mailboxes, streamed: split a mailbox into messages without loading it whole.

mbox(5): a message starts at a `From ` line at the start of the file or after a blank
line; body lines that would read as one were quoted with `>` when written. Reading undoes
one level of mboxrd quoting (`>From ` -> `From `, `>>From ` -> `>From `), which is also
right for what Python's `mailbox` writes. The separator line and the blank line that ends
each message are not part of the message. Not here: parsing MIME (use `email` in the map).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

log = logging.getLogger(__name__)

_QUOTED = re.compile(rb"(?m)^>(>*From )")
_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*((?:.*)(?:\r?\n[ \t]+.*)*)")


@dataclass(frozen=True)
class RawMessage:
    """One message as stored: its number in the mailbox, byte offset, and bytes (From_ line
    included). `data` not starting with `From ` is text found before the first message."""

    number: int
    offset: int
    data: bytes

    @property
    def is_message(self) -> bool:
        return self.data.startswith(b"From ")


def iter_raw_messages(stream: BinaryIO) -> Iterator[RawMessage]:
    """Every message of an mbox stream, one at a time (one message in memory at most).

    Blank lines before the first message are dropped; other text there comes out as a
    RawMessage that is not a message (`is_message` False), for the caller to report.
    """
    offset = 0
    start = 0
    lines: list[bytes] = []
    number = 0
    blank_before = True
    for line in stream:
        if line.startswith(b"From ") and blank_before:
            if lines and any(l.strip() for l in lines):
                msg = RawMessage(number, start, b"".join(lines))
                if msg.is_message:
                    number += 1
                yield msg
            start, lines = offset, [line]
        else:
            lines.append(line)
        blank_before = line in (b"\n", b"\r\n")
        offset += len(line)
    if lines and any(l.strip() for l in lines):
        yield RawMessage(number, start, b"".join(lines))


def message_body(raw: bytes) -> bytes:
    """A stored message without its From_ line and closing blank line, unquoted (mboxrd)."""
    _, _, body = raw.partition(b"\n")
    if body.endswith(b"\n\n"):
        body = body[:-1]
    elif body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    if b">From " in body:
        body = _QUOTED.sub(rb"\1", body)
    return body


def message_id(body: bytes) -> str | None:
    """The Message-ID header of a message (headers end at the first blank line), or None."""
    end = body.find(b"\n\n")
    crlf = body.find(b"\r\n\r\n")
    if crlf != -1 and (end == -1 or crlf < end):
        end = crlf
    headers = body if end == -1 else body[:end + 1]
    m = _MESSAGE_ID.search(headers)
    if not m:
        return None
    value = b" ".join(m.group(1).split()).decode("utf-8", "replace")
    return value or None
