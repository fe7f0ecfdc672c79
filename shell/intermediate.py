"""`intermediate N PREFIX`: hash-partition `key value` lines into files PREFIX0..PREFIX(N-1).

The seed (inferno-lab 37, intermediate.b) tokenizes each line; a line of exactly two
fields is written unchanged to PREFIX<h>, h = (hash(key) & 0x7fffffff) % N with
Geryon's hash (see `shell.partition`); other lines are dropped. Like the seed, all N
files are created (truncated) before reading, so a reducer's `cat PREFIX3` finds a file
even when that partition is empty. Differences from the seed, on purpose:

- lines are bytes; fields are split on ASCII whitespace (the seed: space, tab, CR, LF);
  the key is hashed over its UTF-8 characters (`geryon_hash_bytes`);
- a last line without a newline gets one, so concatenated partitions stay line-aligned;
- the number of dropped lines is reported (the seed dropped them silently).

This module does not sort, combine or read anything but its input stream.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable

from shell.errors import OutputUnavailable
from shell.partition import geryon_partitioner
from shell.stream import DEFAULT_BATCH_BYTES, line_batches

log = logging.getLogger(__name__)

DEFAULT_WRITE_BUFFER = 1 << 16
"""Write buffer per partition file, in bytes."""


@dataclass(frozen=True)
class IntermediateResult:
    """What one `intermediate` run did.

    Attributes:
        paths: the N partition files, in partition order.
        records: lines written.
        dropped: lines without exactly two fields.
    """

    paths: tuple[str, ...]
    records: int
    dropped: int


def partition_paths(prefix: str, n: int) -> tuple[str, ...]:
    """Return the seed's file names for n partitions: PREFIX0 .. PREFIX(n-1)."""
    return tuple(f"{prefix}{i}" for i in range(n))


def route_lines(
    lines: Iterable[bytes], n: int, partition_of: Callable[[bytes], int]
) -> tuple[list[list[bytes]], int]:
    """Sort `key value` lines into n buckets by the partition of their key.

    Returns:
        (buckets, dropped): bucket i holds the lines of partition i, each ending in
        b"\\n"; dropped counts the lines that do not have exactly two fields.
    """
    buckets: list[list[bytes]] = [[] for _ in range(n)]
    dropped = 0
    for line in lines:
        fields = line.split()
        if len(fields) != 2:
            dropped += 1
            continue
        if line[-1:] != b"\n":
            line += b"\n"
        buckets[partition_of(fields[0])].append(line)
    return buckets, dropped


def write_partitions(
    src: BinaryIO,
    n: int,
    prefix: str,
    *,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    partition_of: Callable[[bytes], int] | None = None,
) -> IntermediateResult:
    """Read `key value` lines from `src` and write each to its partition file.

    Args:
        src: binary input stream.
        n: number of partitions (>= 1).
        prefix: file-name prefix; partition i goes to f"{prefix}{i}". Directories in
            the prefix must exist.
        batch_bytes: about how much input is held in memory at once.
        partition_of: key -> partition; defaults to Geryon's hash.

    Raises:
        ValueError: if n < 1.
        OutputUnavailable: if a partition file cannot be created or written.
    """
    if n < 1:
        raise ValueError(f"number of partitions must be positive, not {n}")
    part = partition_of or geryon_partitioner(n)
    paths = partition_paths(prefix, n)
    files: list[BinaryIO] = []
    records = dropped = 0
    try:
        for path in paths:
            try:
                files.append(open(path, "wb", buffering=DEFAULT_WRITE_BUFFER))
            except OSError as exc:
                raise OutputUnavailable(f"intermediate: cannot create {path}: {_reason(exc)}") from exc
        for lines in line_batches(src, batch_bytes):
            buckets, batch_dropped = route_lines(lines, n, part)
            dropped += batch_dropped
            for i, bucket in enumerate(buckets):
                if bucket:
                    records += len(bucket)
                    try:
                        files[i].writelines(bucket)
                    except OSError as exc:
                        raise OutputUnavailable(f"intermediate: cannot write {paths[i]}: {_reason(exc)}") from exc
    except BaseException:
        for f in files:
            try:
                f.close()
            except OSError:
                pass  # the error already propagating says more
        raise
    _close_all(files, paths)
    log.debug("intermediate: %d records into %d partitions, %d dropped", records, n, dropped)
    return IntermediateResult(paths=paths, records=records, dropped=dropped)


def _close_all(files: list[BinaryIO], paths: tuple[str, ...]) -> None:
    """Close every file (flushing it); raise for the first that fails."""
    failure: OutputUnavailable | None = None
    for f, path in zip(files, paths):
        try:
            f.close()
        except OSError as exc:
            if failure is None:
                failure = OutputUnavailable(f"intermediate: cannot write {path}: {_reason(exc)}")
                failure.__cause__ = exc
    if failure is not None:
        raise failure


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
