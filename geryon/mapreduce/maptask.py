"""Run one map task attempt: read the split, call map, sort and write one output file.

The output is written under the attempt's own name (`m<i>.a<attempt>.out`) and is complete
when this returns. A streaming map's command sees only its own split: `$GERYON_DISK`
(also `$n/<disk>`) is the task's input view (`geryon.mapreduce.inputview`), its working directory; the driver decides which attempt's file counts (commit). Failures come
back as a TaskResult naming the task, the input and the record, never as a bare exception.
"""
from __future__ import annotations

import errno
import itertools
import logging
import os
import shutil
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from fs import errors as fserrors
from fs.base import FS

from geryon.mapreduce import counters, memory
from geryon.mapreduce.attempt import FailureKind, classify
from geryon.disks.chunk import ChunkFS
from geryon.errors import DiskFull, GeryonError
from geryon.mapreduce.job import Job, hook_pairs, is_sum
from geryon.mapreduce.jobparams import task_env
from geryon.mapreduce.maponly import MapOnlyWriter
from geryon.mapreduce.partition import RangePartition, checked, fields_partitioner, partitioner
from geryon.mapreduce.rawlines import LineBuffer
from geryon.mapreduce.rawlines import applies as applies_to_lines
from geryon.records.badrecords import SKIPPED_GROUP, SKIPPED_NAME, SkipBudget
from geryon.mapreduce.inputview import InputView, build_view, remove_view
from geryon.records.readers import InputError, raw_chunks, read_records
from geryon.mapreduce.segments import write_index
from geryon.mapreduce.sortbuffer import SortBuffer
from geryon.mapreduce.streaming import (CommandFailed, CommandPartitioner, StreamingCombiner, StreamingProcess,
                                        split_block, split_fields, split_line)
from geryon.mapreduce.taskgc import collecting_rarely
from geryon.mapreduce.task import MapTask, TaskResult, describe_key, traceback_tail
from geryon.mapreduce.totalorder import KeySample

log = logging.getLogger(__name__)

STREAM_BATCH = 8192
"""Lines taken from a streaming mapper between checks of the sort budget."""


def _count_skipped() -> None:
    """A skipped bad record, in the task's `geryon/skipped_records` counter."""
    counters.increment_counter(SKIPPED_GROUP, SKIPPED_NAME)


def output_name(task: MapTask) -> str:
    return f"{task.attempt_id}.out"


def open_local(root: str) -> tuple[FS, str | None]:
    """A local input disk: its fs, and the directory for reads that skip the fs layer."""
    return ChunkFS(root), root


def _failure(job: Job, task: MapTask, where: str, current: Any, exc: Exception) -> tuple[str, str]:
    """The message and detail of a failed map attempt (its kind is `classify(exc)`)."""
    at = f" at record {describe_key(current)}" if current is not None else ""
    if isinstance(exc, CommandFailed):   # the map's command, or the job's combiner or partitioner
        what = "" if exc.step else f"{job.map.describe()}: "
        return f"map task {task.id} ({where}) failed: {what}{exc}", "\n".join(exc.stderr_tail)
    if isinstance(exc, DiskFull):
        return f"map task {task.id} ({where}) failed: {exc}", ""
    if isinstance(exc, InputError):
        return f"map task {task.id} failed: {exc}", ""
    if isinstance(exc, fserrors.FSError):  # a remote disk: its node is gone (or silent), or the chunk is
        return f"map task {task.id} ({where}) failed: cannot read {task.root}: {exc}", ""
    if isinstance(exc, GeryonError):
        return f"map task {task.id} ({where}){at} failed: {exc}", ""
    if isinstance(exc, MemoryError):
        return (f"map task {task.id} ({where}) ran out of memory (MemoryError) with --sort-budget "
                f"{memory.describe(job.sort_budget)}: lower --sort-budget or -j"), ""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"map task {task.id} ({where}) failed: no space left for map output in {task.workdir}", ""
    return f"map task {task.id} ({where}){at} failed: {type(exc).__name__}: {exc}", traceback_tail(exc)


def _partitioner(job: Job, task: MapTask, cwd: str, env: dict[str, str]) -> Callable[[Any, int], int]:
    """A map task's partition function: the task's key ranges (a total-order job), the job's own, its
    command (run in `cwd`, with `env`), or the named hash (over the partition fields)."""
    part: Callable[[Any, int], int]
    if task.bounds is not None:
        part = RangePartition(task.bounds)
    elif job.partition is not None:
        part = checked(job.partition.func)  # type: ignore[arg-type]
    elif job.partition_cmd is not None:
        part = CommandPartitioner(job.partition_cmd, cwd, env)
    else:
        part = partitioner(job.partitioner)
        if job.partition_key_fields < job.key_fields:   # KeyFieldBasedPartitioner
            part = fields_partitioner(part, job.partition_key_fields)
    return part


def _sort_buffer(job: Job, task: MapTask, spill_dir: str, cwd: str, env: dict[str, str]) -> SortBuffer:
    """A map task's sort buffer, with the job's partitioner (`_partitioner`) and combiner (a
    streaming one's commands run in `cwd`, with `env`)."""
    part = _partitioner(job, task, cwd, env)
    combine = job.combine
    lines = (StreamingCombiner(combine, job.key_fields, cwd, env, job.sort_budget)
             if combine is not None and combine.streaming else None)
    return SortBuffer(job.partitions, part, combine.func if combine is not None else None, is_sum(combine),
                      job.sort_budget, spill_dir, ordered=not (is_sum(combine) and job.sum_reduce),
                      combine_lines=lines)


def run_with_replicas(job: Job, task: MapTask,
                      open_input: Callable[[str], tuple[FS, str | None]] = open_local,
                      view_dir: str | None = None) -> TaskResult:
    """Run a map attempt, starting over on the next replica when the input cannot be read.

    Damaged (checksum mismatch), missing or unreadable input on `task.root` sends the whole
    attempt to `task.alternates[0]`, and so on, saying so on stderr (the job's log). When no
    copy could be read and some node did not answer, the result says "unreachable" (a
    cluster tries again a little later); when every copy is bad, "input" (the job fails).
    """
    import sys
    from dataclasses import replace

    locations = [task.root, *task.alternates]
    result = TaskResult(task=task.id, attempt=task.attempt, ok=False)
    silent = False
    unreadable: list[str] = []   # copies that failed, reported so later maps start elsewhere
    for i, location in enumerate(locations):
        result = run_map_task(job, replace(task, root=location), open_input, view_dir)
        if result.ok or result.error_kind not in (FailureKind.INPUT, FailureKind.UNREACHABLE):
            if result.ok and i > 0:
                result.counters.setdefault("geryon", {})["replica_reads"] = 1
            result.unreadable = unreadable
            return result
        silent = silent or result.error_kind == FailureKind.UNREACHABLE
        unreadable.append(location)
        if i + 1 < len(locations):
            # once, on stderr (the job's log, and the driver's terminal); a log record too would
            # print it a second time wherever logging also writes to stderr (workers, the CLI)
            print(f"geryon: {task.split.disk}: {location} failed ({result.error}); "
                  f"reading replica {locations[i + 1]}", file=sys.stderr, flush=True)
            log.debug("%s: %s failed; reading replica %s", task.split.disk, location, locations[i + 1])
    if silent:
        result.error_kind = FailureKind.UNREACHABLE
    result.unreadable = unreadable
    return result


@collecting_rarely   # a task builds millions of small containers: see taskgc
def run_map_task(job: Job, task: MapTask, open_input: Callable[[str], tuple[FS, str | None]] = open_local,
                 view_dir: str | None = None) -> TaskResult:
    """Run `task` of `job` to completion and report.

    Args:
        open_input: turns `task.root` into a filesystem (and a local directory, or None
            when the disk is read over the network); the cluster worker passes its own.
        view_dir: where a streaming map's input view is made (default: `task.workdir`;
            the cluster worker keeps it out of the output chunk, whose bytes are counted).
    """
    started = time.monotonic()
    counters.reset()
    result = TaskResult(task=task.id, attempt=task.attempt, ok=False, bytes_in=task.split.size)
    spill_dir = os.path.join(task.workdir, f"{task.attempt_id}.spill")
    out_path = os.path.join(task.workdir, output_name(task))
    where = task.split.describe()
    current: Any = None
    view: InputView | None = None
    out_file: Any = None   # a map-only task's output, written as it comes
    try:
        os.makedirs(spill_dir, exist_ok=True)
        disk_fs, local_root = open_input(task.root)
        env: dict[str, str] = {}
        if job.map.streaming:
            view = build_view(disk_fs, task.split, view_dir or task.workdir, str(task.attempt_id),
                              local_root)
            env = {**view.env(), "GERYON_TASK": task.id, **task_env(job, streaming=True)}
        buf: Any
        if task.sample:    # a total-order job's sampling task: keys kept, nothing written
            buf = KeySample(task.sample, task.index)
        elif job.map_only:   # in input order, in the output format: no sort, no partitions
            out_file = open(out_path, "wb")
            buf = MapOnlyWriter(out_file, job.format)
        else:
            cwd = view.disk_dir if view is not None else task.workdir
            part = _partitioner(job, task, cwd, env)
            if applies_to_lines(job, part):   # a streaming map feeding a streaming reduce: kept as bytes
                buf = LineBuffer(job.partitions, part, job.sort_budget, spill_dir)
            else:
                buf = _sort_buffer(job, task, spill_dir, cwd, env)
        if job.map.streaming:
            assert job.map.command is not None and view is not None
            split = split_line if job.key_fields == 1 else partial(split_fields, fields=job.key_fields)
            # Linked files were not read: the feed reads them all, through the manifest.
            with StreamingProcess(job.map.command, raw_chunks(disk_fs, task.split, local_root),
                                  cwd=view.disk_dir, env=env, drain=view.linked > 0) as proc:
                n = 0
                if out_file is None and job.key_fields == 1:
                    # a block of lines split at once (a Python step per line cost 40 % more)
                    for block in proc.blocks():
                        if type(buf) is LineBuffer:
                            before = buf.pairs_in
                            if buf.add_block(block):
                                n += buf.pairs_in - before
                                continue
                            # not UTF-8: its keys would sort as surrogate-escaped str; the generic buffer
                            generic = _sort_buffer(job, task, spill_dir, view.disk_dir, env)
                            buf.hand_over(generic)
                            buf = generic
                        pairs = split_block(block)
                        n += len(pairs)
                        buf.add(pairs)
                else:
                    lines = proc.lines()
                    while True:
                        batch = list(itertools.islice(lines, STREAM_BATCH))
                        if not batch:
                            break
                        n += len(batch)
                        if out_file is not None:
                            buf.add_lines(batch)
                        else:
                            buf.add(map(split, batch))
                proc.wait()
            result.records_in = n
        else:
            mapper = job.map.func
            assert mapper is not None
            n = 0
            skip = SkipBudget(job.skip_bad, _count_skipped) if job.skip_bad else None
            if job.map_init is not None:   # mrjob's mapper_init: once per task, before the first record
                buf.add(hook_pairs(job.map_init.func(), "map_init"))  # type: ignore[misc]
            for current, value in read_records(disk_fs, task.split, job.reader, local_root, on_bad=skip,
                                                   max_record=job.sort_budget):
                n += 1
                buf.add(mapper(current, value))
            result.records_in = n
            current = None
            if job.map_final is not None:  # ... and mapper_final, after the last
                buf.add(hook_pairs(job.map_final.func(), "map_final"))  # type: ignore[misc]
        if task.sample:
            result.sample = buf.keys()
            result.records_out = buf.pairs_in
            result.ok = True
            return result
        if out_file is not None:
            segments = buf.finish()
            out_file.close()
        else:
            segments = buf.finish(out_path)
        if buf.spills:  # the buffer reached --sort-budget (the job summary shows how often)
            counters.increment_counter("geryon", "map_spills", buf.spills)
        write_index(out_path + ".index", segments)
        result.ok = True
        result.output = out_path
        result.segments = segments
        result.records_out = buf.pairs_in
        result.bytes_out = os.path.getsize(out_path)
    except Exception as exc:  # the user's map raised, the input could not be read, or the output written
        result.error_kind = classify(exc)   # a malformed record is in every copy: only damage reads a replica
        result.error, result.detail = _failure(job, task, where, current, exc)
    finally:
        if out_file is not None:
            out_file.close()
        shutil.rmtree(spill_dir, ignore_errors=True)
        if view is not None:
            remove_view(view)
        result.counters = counters.snapshot()
        result.seconds = time.monotonic() - started
    if not result.ok:
        for p in (out_path, out_path + ".index"):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
    return result
