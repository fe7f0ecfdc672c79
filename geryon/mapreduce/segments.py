"""Map output files: R sorted segments in one file, plus an index (Hadoop's file.out).

A segment is a run of msgpack blocks; each block holds up to `BLOCK_RECORDS` records, and
about `BLOCK_BYTES` at most (big values make small blocks), as parallel arrays of keys and values, where a value is either one value (`single`) or the
list of values of that key. A key may appear in several consecutive records (a long list
is cut). Empty partitions take no bytes. Reading a segment back is `iter_records`.
`narrow` merges many sorted segments into fewer, in passes through files, so that a task
never reads more of them at once than its budget holds (`merge_fan_in`).
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from itertools import accumulate, compress
from operator import not_
from typing import Any, BinaryIO

from geryon.mapreduce import order
from geryon.mapreduce.codec import block_stream, pack_block
from geryon.mapreduce.footprint import measured_bytes, object_bytes

log = logging.getLogger(__name__)

BLOCK_RECORDS = 16384
"""Records per block: large enough for C-speed packing, small enough to bound memory."""

BLOCK_VALUES = 65536
"""Values per block when records carry value lists (a hot key's list is cut to fit)."""

BLOCK_BYTES = 1 << 20
"""About the most bytes of keys and values a block holds (estimated from a sample): a block is
packed whole in memory, and decoded whole by its reader, so 65,536 values of 5 KB would be
320 MB twice over on top of the sort budget."""

SHORT_LIST = 64
"""`SegmentWriter.add_lists` copies records whose lists are at most this long in bulk; a longer one
(a hot key's) is measured and cut on its own."""

SIZE_SAMPLE = 4
"""Records sampled (evenly spaced) to estimate the bytes of a batch of keys or values."""

READ_CHUNK = 1 << 20
"""Bytes read at a time when streaming a segment."""

MERGE_STREAM_BYTES = 8 << 20
"""What one segment open in a merge is counted as against the budget: its read chunk, the unpacker's
buffer and a decoded block (measured about 4 MiB with 1 MiB blocks), twice. A task merges at most
budget / this segments at once (at least 2); more are first merged in passes (`narrow`)."""


@dataclass(frozen=True)
class Segment:
    """Where partition r's records lie in a map output file."""

    offset: int
    length: int
    records: int
    kind: str  # the kind of its keys (`order.key_kind`), "" when empty
    ordered: bool = True  # False: records in hash order (sum aggregation; see sortbuffer)
    lines: bool = False   # True: the records are `key<TAB>value` lines, not msgpack blocks (`rawlines`)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Segment":
        return cls(int(data["offset"]), int(data["length"]), int(data["records"]), str(data["kind"]),
                   bool(data.get("ordered", True)), bool(data.get("lines", False)))


def write_index(path: str, segments: list[Segment]) -> None:
    with open(path, "w") as f:
        json.dump([s.to_json() for s in segments], f)


def read_index(path: str) -> list[Segment]:
    with open(path) as f:
        return [Segment.from_json(d) for d in json.load(f)]


class SegmentWriter:
    """Writes records of one partition as blocks to an open file."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._start = f.tell()
        self._keys: list = []
        self._values: list = []
        self._single: bool | None = None
        self._nvalues = 0
        self._bytes = 0  # estimated bytes of the block being collected
        self.records = 0

    def add_singles(self, keys: list, values: list) -> None:
        """Add records with one value each (already sorted, after what was added before)."""
        self._switch(True)
        if not keys:
            return
        value_each = mean_bytes(values)
        each = max(1, mean_bytes(keys) + value_each)
        i, n = 0, len(keys)
        while i < n:
            # Each chunk's keys are measured (their lengths, or a sample) and the next chunk is cut
            # at their size: keys that grow late (short ones sampled, 1 KB ones after them in a
            # spill's insertion order) would otherwise make blocks of 16,384 long keys.
            step = max(1, min(BLOCK_RECORDS, BLOCK_BYTES // each))
            chunk = keys[i:i + step]
            got = measured_bytes(chunk, SIZE_SAMPLE) + len(chunk) * value_each
            each = max(1, got // len(chunk))
            if got > 2 * BLOCK_BYTES and len(chunk) > 1:
                continue  # longer than the sample said: cut again at the size measured
            self._keys.extend(chunk)
            self._values.extend(values[i:i + len(chunk)])
            self._bytes += got
            i += len(chunk)
            if len(self._keys) >= BLOCK_RECORDS or self._bytes >= BLOCK_BYTES:
                self._flush()

    def add_list(self, key: Any, values: list) -> None:
        """Add one record whose value is a list of values (cut if it is long or big)."""
        self._switch(False)
        if len(values) == 1:   # the common case of distinct keys: no sampling for one value
            self._keys.append(key)
            self._values.append(values)
            self._nvalues += 1
            self._bytes += object_bytes(key) + max(1, object_bytes(values[0]))  # long keys fill a block too
            if len(self._keys) >= BLOCK_RECORDS or self._nvalues >= BLOCK_VALUES or self._bytes >= BLOCK_BYTES:
                self._flush()
            return
        each = max(1, mean_bytes(values)) if values else 1
        step = max(1, min(BLOCK_VALUES, BLOCK_BYTES // each))
        key_bytes = object_bytes(key)  # long keys fill a block too (16,384 keys of 1 KB: 16 MB)
        for i in range(0, len(values), step):
            part = values[i:i + step] if len(values) > step else values
            self._keys.append(key)
            self._values.append(part)
            self._nvalues += len(part)
            self._bytes += key_bytes + len(part) * each
            if len(self._keys) >= BLOCK_RECORDS or self._nvalues >= BLOCK_VALUES or self._bytes >= BLOCK_BYTES:
                self._flush()

    def add_lists(self, keys: list, lists: list) -> None:
        """Add records whose values are lists, as `add_list` for each key in turn would (keys already
        sorted), in bulk: runs of short lists are measured and copied a block's worth at a time, cut at
        the same limits (records, values, bytes), not a Python step per key; a long list (a hot key's,
        which `add_list` cuts) or an empty one (dropped) goes through `add_list` alone."""
        self._switch(False)
        n = len(keys)
        if not n:
            return
        lens = list(map(len, lists))
        acc = list(accumulate(lens, initial=0))
        alone = sorted({*compress(range(n), map(SHORT_LIST.__lt__, lens)), *compress(range(n), map(not_, lens))})
        start = 0
        for stop in (*alone, n):
            self._add_short(keys, lists, acc, start, stop)
            if stop < n:
                self.add_list(keys[stop], lists[stop])
            start = stop + 1

    def _add_short(self, keys: list, lists: list, acc: list[int], i: int, stop: int) -> None:
        """`add_lists` of keys[i:stop], whose lists are all short (`acc`: the running count of values)."""
        while i < stop:
            room = min(stop - i, max(1, BLOCK_RECORDS - len(self._keys)))
            some = lists[i:i + room:max(1, room // SIZE_SAMPLE)]
            value_each = max(1, sum(object_bytes(v[0]) for v in some) // len(some))
            while True:
                nv = acc[i + room] - acc[i]
                got = measured_bytes(keys[i:i + room], SIZE_SAMPLE) + nv * value_each
                # cut where the values or the bytes would pass a block's (estimated evenly over the run)
                fit = room
                if self._nvalues + nv > BLOCK_VALUES:
                    fit = room * (BLOCK_VALUES - self._nvalues) // nv
                if self._bytes + got > BLOCK_BYTES:
                    fit = min(fit, room * max(0, BLOCK_BYTES - self._bytes) // got)
                if fit >= room or room == 1:
                    break
                if fit < 1 and self._keys:
                    break   # this block is full: flush it and start the next
                room = max(1, fit)
            if fit < 1 and self._keys and room > 1:
                self._flush()
                continue
            self._keys.extend(keys[i:i + room])
            self._values.extend(lists[i:i + room])
            self._nvalues += nv
            self._bytes += got
            i += room
            if len(self._keys) >= BLOCK_RECORDS or self._nvalues >= BLOCK_VALUES or self._bytes >= BLOCK_BYTES:
                self._flush()

    def _switch(self, single: bool) -> None:
        if self._single is not None and self._single != single and self._keys:
            self._flush()
        self._single = single

    def _flush(self) -> None:
        if self._keys:
            self._f.write(pack_block(bool(self._single), self._keys, self._values))
            self.records += len(self._keys)
            self._keys, self._values, self._nvalues, self._bytes = [], [], 0, 0

    def finish(self, kind: str, ordered: bool = True) -> Segment:
        self._flush()
        end = self._f.tell()
        return Segment(self._start, end - self._start, self.records, kind if self.records else "", ordered)


def mean_bytes(items: list) -> int:
    """The average bytes of an item of a non-empty list, from `SIZE_SAMPLE` evenly spaced ones."""
    step = max(1, len(items) // SIZE_SAMPLE)
    sample = items[::step][:SIZE_SAMPLE]
    return sum(map(object_bytes, sample)) // len(sample)


def file_chunks(path: str, offset: int, length: int) -> Iterator[bytes]:
    """Read bytes [offset, offset+length) of a local file in chunks."""
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left > 0:
            data = f.read(min(READ_CHUNK, left))
            if not data:
                raise EOFError(f"{path}: truncated map output (wanted {left} more bytes)")
            left -= len(data)
            yield data


def iter_records(chunks: Iterable[bytes]) -> Iterator[tuple[Any, list]]:
    """(key, values-list) records of a segment, in order; single values come as [v]."""
    for single, keys, values in block_stream(chunks):
        if single:
            for k, v in zip(keys, values):
                yield k, [v]
        else:
            yield from zip(keys, values)


def iter_blocks(chunks: Iterable[bytes]) -> Iterator[tuple[bool, list, list]]:
    """The raw blocks of a segment (single flag, keys, values)."""
    return block_stream(chunks)


def merge_fan_in(budget: int) -> int:
    """How many sorted segments a task with this sort budget may read at once (at least 2)."""
    return max(2, budget // MERGE_STREAM_BYTES)


Source = tuple[Callable[[], Iterable[bytes]], str]
"""A sorted segment to merge: a function opening its bytes (as chunks), and its keys' kind."""


def merged_kind(kinds: Iterable[str]) -> str:
    """The kind of the keys of segments merged into one: theirs if they agree, else "mixed"."""
    ks = {k for k in kinds if k}
    return ks.pop() if len(ks) == 1 else ("mixed" if ks else "")


def write_merged(f: BinaryIO, sources: list[Source]) -> Segment:
    """Merge sorted segments into one segment written to `f`: every record, in key order,
    records of equal keys in the order of `sources` (a stable merge), each record as it was
    (so a record is never more than the block it came in)."""
    kinds = [kind for _, kind in sources]
    mixed = len({k for k in kinds if k}) > 1 or "mixed" in kinds
    w = SegmentWriter(f)
    for key, values in order.merge([iter_records(open_()) for open_, _ in sources], mixed=mixed):
        w.add_list(key, values)
    return w.finish(merged_kind(kinds))


def narrow(sources: list[Source], fan: int, spill_dir: str) -> tuple[list[Source], int]:
    """Merge consecutive sources into files under `spill_dir` until at most `fan` are left.

    Each merge reads at most `fan` sources at once. The order of equal keys is kept: a merged
    file stands where its (consecutive) sources stood, so merging what is left gives the same
    records in the same order as one merge of all. The last pass merges only as many of the
    first sources as it must. Files of a finished pass are removed; the caller removes
    `spill_dir`. Returns the sources left and how many merges were made.
    """
    fan = max(2, fan)
    merges = 0
    runs: list[tuple[Source, str | None]] = [(src, None) for src in sources]  # (source, our file)
    while len(runs) > fan:
        excess = len(runs) - fan
        group = min(fan, excess + 1)
        last = group == excess + 1  # merging the first `group` leaves exactly `fan`
        left: list[tuple[Source, str | None]] = []
        for i in range(0, len(runs), group):
            batch = runs[i:i + group]
            if len(batch) == 1 or last and i > 0:
                left.extend(runs[i:])
                break
            path = os.path.join(spill_dir, f"merge{merges}")
            merges += 1
            with open(path, "wb") as f:
                seg = write_merged(f, [src for src, _ in batch])
            remove_quietly(*(p for _, p in batch if p is not None))
            left.append(((partial(file_chunks, path, seg.offset, seg.length), seg.kind), path))
        runs = left
    return [src for src, _ in runs], merges


def remove_quietly(*paths: str) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
