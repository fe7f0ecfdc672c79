"""What a job's settings must satisfy: one line naming the setting (and the option) for each
mistake, checked when a `geryon.mapreduce.job.Job` is made; the readers a job may name.

Each check takes the job being made (its steps already `Step`s). Not here: the job itself
(`geryon.mapreduce.job`), the CLI's usage errors (`geryon.cli.mapreduce`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from geryon.errors import JobDefinitionError
from geryon.mapreduce.codec import FORMATS, PAIRS
from geryon.mapreduce.partition import PARTITIONERS

READERS = ("file", "lines", "bytes", "mbox", "tar", "warc", "auto")
"""Record readers (see `geryon.records.readers`): whole file as text (default), one record per line,
whole file as bytes, mail message, tar member, WARC record, or chosen per file by extension."""

STEP_READERS = ("pairs", "keyvalue")
"""Readers of the parts one step of a multi-step job writes for the next (`geryon.mapreduce.steps`):
never a `--reader` choice."""

READER_OF_DISKS = ""
"""`Job.reader` meaning: the record format the input disks recorded when loaded (ndb `format=`),
else `file` (what `geryon mapreduce` does without --reader)."""


def disks_reader(reader: str, formats: Sequence[tuple[str, str]]) -> str:
    """The reader a job uses: `reader` if named, else the one its disks' recorded formats agree on.

    Args:
        formats: (disk name, recorded format or "") of every input disk.
    Raises:
        JobDefinitionError: the disks recorded different formats (one line naming two of them).
    """
    if reader != READER_OF_DISKS:
        return reader
    seen: dict[str, str] = {}
    for name, fmt in formats:
        seen.setdefault(fmt if fmt in READERS else "file", name)
    if len(seen) > 1:
        (a, da), (b, db) = list(seen.items())[:2]
        raise JobDefinitionError(f"the input disks hold different records ({da}: {a}, {db}: {b}): "
                                 f"name one reader with --reader")
    return next(iter(seen), "file")


HOOKS = ("map_init", "map_final", "reduce_init", "reduce_final")
"""A job's per-task hooks (mrjob's mapper_init ... reducer_final)."""


def check_hooks(job: Any) -> None:
    """Hooks are Python functions, beside a Python map (reduce)."""
    for attr in HOOKS:
        hook = getattr(job, attr)
        if hook is not None and hook.streaming:
            raise JobDefinitionError(f"{attr} must be a Python function, not a command")
        owner = job.map if attr.startswith("map") else job.reduce
        if hook is not None and owner is not None and owner.streaming:
            raise JobDefinitionError(f"{attr} is for a Python {attr.split('_')[0]}: a streaming command "
                                     f"does its own set-up and tear-down")


def check_single(job: Any) -> None:
    """A one-step job's settings, together."""
    if job.partitions < 0:
        raise JobDefinitionError(f"partitions must be 0 (a map-only job) or more, not {job.partitions}")
    if job.map_only and job.reduce is not None:
        raise JobDefinitionError(f"a map-only job (-R 0) runs no reduce, but one is given: "
                                 f"{job.reduce.describe()} (give NONE as the reducer)")
    if job.map_only and job.combine is not None:
        raise JobDefinitionError("a map-only job (-R 0) runs no combiner")
    if job.partition is not None and job.partition.streaming:
        raise JobDefinitionError("partition must be a Python function partition(key, n)")
    if job.partition is not None and job.map.streaming:
        raise JobDefinitionError("partition is for a Python map (streaming jobs: --partitioner-cmd)")
    if not isinstance(job.sort_values, bool):
        raise JobDefinitionError(f"sort_values must be True or False, not {job.sort_values!r}")
    if not isinstance(job.total_order, bool):
        raise JobDefinitionError(f"total_order must be True or False, not {job.total_order!r}")
    if job.total_order and job.map_only:
        raise JobDefinitionError("a total-order job sorts its reduce output: a map-only job (-R 0) has none")
    if job.total_order and job.partition is not None:
        raise JobDefinitionError("a total-order job partitions by sampled key ranges: drop its partition function")
    if job.total_order and job.partitioner != "crc32":
        raise JobDefinitionError(f"a total-order job partitions by sampled key ranges, not by the "
                                 f"{job.partitioner} hash: drop --partitioner")
    if job.map_only and job.sort_values:
        raise JobDefinitionError("a map-only job (-R 0) has no reduce to sort values for")
    if job.map_only and job.partition is not None:
        raise JobDefinitionError("a map-only job (-R 0) has no partitions to choose: drop partition")
    if job.map_only and (job.reduce_init or job.reduce_final):
        raise JobDefinitionError("a map-only job (-R 0) runs no reduce_init or reduce_final")
    if job.reader not in READERS and job.reader not in STEP_READERS and job.reader != READER_OF_DISKS:
        raise JobDefinitionError(f"unknown reader {job.reader!r} (choose from {', '.join(READERS)})")
    if job.partitioner not in PARTITIONERS:
        raise JobDefinitionError(f"unknown partitioner {job.partitioner!r} (choose from {', '.join(PARTITIONERS)})")
    if job.format not in FORMATS and job.format != PAIRS:
        raise JobDefinitionError(f"unknown output format {job.format!r} (choose from {', '.join(FORMATS)})")
    if job.sort_budget < 1 << 20:
        raise JobDefinitionError("the sort budget must be at least 1 MiB")
    if job.split_size is not None and job.split_size < 1:
        raise JobDefinitionError("the split size must be positive")
    if job.skip_bad < 0:
        raise JobDefinitionError(f"skip_bad must not be negative, not {job.skip_bad}")
    if job.combine is not None and job.combine.streaming and not job.map.streaming:
        raise JobDefinitionError(f"the combiner {job.combine.describe()} is a command, which reads and writes "
                                 f"text lines: it needs a streaming map (a Python map: combine(key, values))")
    check_key_fields(job)


def check_key_fields(job: Any) -> None:
    """Key fields and a partitioner command are for a streaming map's lines (Hadoop Streaming's)."""
    n, m = job.key_fields, job.partition_fields
    if type(n) is not int or n < 1:
        raise JobDefinitionError(f"key_fields must be 1 or more, not {n!r}")
    if m is not None and (type(m) is not int or not 1 <= m <= n):
        raise JobDefinitionError(f"partition_fields must be 1..{n} (the key's fields), not {m!r}")
    cmd = job.partition_cmd
    if cmd is not None and not cmd.streaming:
        raise JobDefinitionError("partition_cmd must be a command (a Python map: partition(key, n))")
    if not job.map.streaming and (n != 1 or m is not None or cmd is not None):
        what = "partition_cmd" if cmd is not None else "key_fields" if n != 1 else "partition_fields"
        raise JobDefinitionError(f"{what} is for a streaming map's lines: a Python map yields its keys "
                                 f"(and may define partition(key, n))")
    if job.map_only and (n != 1 or m is not None or cmd is not None):
        raise JobDefinitionError("a map-only job (-R 0) has no keys to sort or partition: drop "
                                 + ("the partitioner command" if cmd is not None else "the key fields"))
    if cmd is not None and m is not None:
        raise JobDefinitionError("the partitioner command chooses the partition: drop partition_fields")
    if job.total_order and (cmd is not None or m is not None):
        raise JobDefinitionError("a total-order job partitions by sampled key ranges: drop "
                                 + ("the partitioner command" if cmd is not None else "partition_fields"))
    if cmd is not None and job.partitioner != "crc32":
        raise JobDefinitionError(f"the partitioner command chooses the partition: drop --partitioner "
                                 f"{job.partitioner}")


def check_steps(job: Any, step_type: type) -> tuple[Any, ...]:
    """A multi-step job's steps (a non-empty list of one-step jobs, of `step_type`), as a tuple;
    the job has nothing of its own to run."""
    if isinstance(job.steps, (str, bytes)) or not hasattr(job.steps, "__iter__"):
        raise JobDefinitionError(f"steps must be a list of steps (MRStep or Job), not {job.steps!r}")
    steps = tuple(job.steps)
    if not steps:
        raise JobDefinitionError("a multi-step job needs at least one step (its steps list is empty)")
    for i, step in enumerate(steps, 1):
        if not isinstance(step, step_type):
            raise JobDefinitionError(f"step {i} is not a step (MRStep or Job): {step!r}")
        if step.steps is not None:
            raise JobDefinitionError(f"step {i} is itself a multi-step job: list its steps instead")
    own = [a for a in ("map", "reduce", "combine", "partition", "partition_cmd", *HOOKS) if getattr(job, a) is not None]
    if job.total_order:
        own.append("total_order")
    if own:
        raise JobDefinitionError(f"a multi-step job runs its steps: give {own[0]} in a step, not beside steps")
    return steps


def check_multi(job: Any) -> None:
    """A multi-step job's own settings (the ones every step runs with)."""
    if job.reader not in READERS and job.reader != READER_OF_DISKS:
        raise JobDefinitionError(f"unknown reader {job.reader!r} (choose from {', '.join(READERS)})")
    if job.format not in FORMATS:
        raise JobDefinitionError(f"unknown output format {job.format!r} (choose from {', '.join(FORMATS)})")
    if job.sort_budget < 1 << 20:
        raise JobDefinitionError("the sort budget must be at least 1 MiB")
    if job.split_size is not None and job.split_size < 1:
        raise JobDefinitionError("the split size must be positive")
