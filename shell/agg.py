"""`agg`: sum the counts of each run of equal keys in sorted `key count` lines.

The seed (inferno-lab 37, agg.b) reads lines of two whitespace-separated fields and prints
`key total` (one space) when the key changes; lines of any other shape are skipped.
Differences from the seed, on purpose: a count that is not an integer is an error naming
the line (Limbo's `int "x"` silently gave 0); skipped lines are counted; totals are
unbounded integers (Limbo's were 32-bit). Signed counts (`-3`, `+2`) are allowed.

Input need not be sorted: each run of equal adjacent keys gives one line, as in the seed.
This module does not sort and does not read files; `Aggregator` is pure.
"""
from __future__ import annotations

import logging
import re
from typing import BinaryIO, Iterable

from shell.errors import BadRecord
from shell.stream import DEFAULT_BATCH_BYTES, line_batches

log = logging.getLogger(__name__)

_INTEGER = re.compile(rb"[+-]?[0-9]+")


def parse_count(field: bytes, lineno: int) -> int:
    """Return the integer in `field` (ASCII digits, optional sign).

    Raises:
        BadRecord: if `field` is not such an integer (`int()` alone would accept `1_000`).
    """
    if field.isdigit() or _INTEGER.fullmatch(field):
        return int(field)
    shown = field.decode("utf-8", "backslashreplace")
    raise BadRecord(f"agg: line {lineno}: count is not an integer: {shown!r}", lineno)


class Aggregator:
    """Sums counts over runs of equal keys; fed lines in batches, holds one run at a time.

    Attributes:
        lines: lines read so far.
        dropped: lines skipped for not having exactly two fields.
    """

    def __init__(self) -> None:
        self._key: bytes | None = None
        self._total = 0
        self.lines = 0
        self.dropped = 0

    def feed(self, lines: Iterable[bytes], out: list[bytes] | None = None) -> list[bytes]:
        """Consume `lines`; return the `key total\\n` lines of the runs they closed.

        Args:
            lines: input lines.
            out: list to append the output lines to (and return); a new one if None.
                Lines appended before an error stay there.

        Raises:
            BadRecord: on a count that is not an integer.
        """
        if out is None:
            out = []
        key, total, lineno = self._key, self._total, self.lines
        try:
            for line in lines:
                lineno += 1
                fields = line.split()
                if len(fields) != 2:
                    self.dropped += 1
                    continue
                k, count = fields
                if count.isdigit():
                    n = int(count)
                else:
                    n = parse_count(count, lineno)
                if k == key:
                    total += n
                else:
                    if key is not None:
                        out.append(b"%s %d\n" % (key, total))
                    key, total = k, n
        finally:
            self._key, self._total, self.lines = key, total, lineno
        return out

    def finish(self) -> list[bytes]:
        """Return the line of the last open run (if any) and close it."""
        if self._key is None:
            return []
        last = b"%s %d\n" % (self._key, self._total)
        self._key, self._total = None, 0
        return [last]


def aggregate(src: BinaryIO, dst: BinaryIO, *, batch_bytes: int = DEFAULT_BATCH_BYTES) -> Aggregator:
    """Stream `src` through an `Aggregator` into `dst`; return it for its counters.

    Raises:
        BadRecord: on a count that is not an integer (output up to the bad line's
            run has been written).
    """
    aggregator = Aggregator()
    for lines in line_batches(src, batch_bytes):
        out: list[bytes] = []
        try:
            aggregator.feed(lines, out)
        except BadRecord:
            dst.writelines(out)
            raise
        dst.writelines(out)
    dst.writelines(aggregator.finish())
    log.debug("agg: %d lines, %d dropped", aggregator.lines, aggregator.dropped)
    return aggregator
