"""Reading binary streams in bounded batches, for filters that must work in pipes.

Batches are lists of whole lines (each but possibly the last ending in b"\\n"), about
`DEFAULT_BATCH_BYTES` at a time, so a filter's memory does not grow with its input. This
module does not decode text and does not write.
"""
from __future__ import annotations

import logging
from typing import BinaryIO, Iterator

log = logging.getLogger(__name__)

DEFAULT_BATCH_BYTES = 1 << 20
"""About how many bytes of input a filter holds at once."""

WORD_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
"""The bytes of `[a-zA-Z0-9_]`, the seed's word characters (gridlib `idx`)."""


def line_batches(src: BinaryIO, size: int = DEFAULT_BATCH_BYTES) -> Iterator[list[bytes]]:
    """Yield lists of lines from `src`, about `size` bytes per list, until end of input.

    A line longer than `size` comes whole in its own batch.
    """
    while True:
        lines = src.readlines(size)
        if not lines:
            return
        yield lines


def word_blocks(src: BinaryIO, size: int = DEFAULT_BATCH_BYTES) -> Iterator[bytes]:
    """Yield blocks of `src` that never cut a word of `WORD_BYTES` in two.

    Blocks are yielded as soon as data arrives (`read1`), so a filter in an interactive
    pipe does not wait for a full block. Only a single word longer than `size` makes a
    block larger than `size`.
    """
    read = getattr(src, "read1", src.read)
    carry = b""
    while True:
        chunk = read(size)
        if not chunk:
            break
        buf = carry + chunk if carry else chunk
        head = buf.rstrip(WORD_BYTES)
        carry = buf[len(head):]
        if head:
            yield head
    if carry:
        yield carry
