"""Run one reduce task attempt: fetch partition r of every map output, merge, reduce, write.

A partition that fits comfortably in the sort budget is merged in memory (one stable sort
over already-sorted runs, which Python's timsort does in near-linear time); a larger one is
merged as streams, one key at a time, so that a key with millions of values is never held
whole; and never more streams at once than the budget holds (`segments.merge_fan_in`): with
more map outputs than that, they are first merged in passes through files next to the part
file (`segments.narrow`), which keeps the order of equal keys, so the output is the same. The part file is written under the attempt's name in the job's staging directory;
the driver renames the committed attempt into place.
"""
from __future__ import annotations

import itertools
import logging
import operator
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from geryon.mapreduce import counters, memory, order
from geryon.mapreduce.attempt import FailureKind, classify, staged_part_name
from geryon.disks.chunk import ChunkFS
from geryon.mapreduce.aggregate import sum_blocks
from geryon.mapreduce.codec import encode_records, format_bytes_lines, format_lines, raw_block_stream, text_field
from geryon.errors import DiskFull, GeryonError
from geryon.mapreduce.job import Job, hook_pairs
from geryon.mapreduce.jobparams import task_env
from geryon.mapreduce.maponly import copy_segment
from geryon.mapreduce.rawlines import LinesMerge, generic_fetch
from geryon.mapreduce.segments import Segment, file_chunks, iter_blocks, iter_records, merge_fan_in, narrow
from geryon.mapreduce.streaming import CommandFailed, StreamingProcess
from geryon.mapreduce.taskgc import collecting_rarely
from geryon.mapreduce.task import ReduceTask, TaskResult, describe_key, traceback_tail

log = logging.getLogger(__name__)

MEMORY_FACTOR = 2
"""Decoded keys and values take about this many times their encoded bytes in memory ..."""

RECORD_BYTES = 224
"""... plus this per record held in memory: its key and value objects' headers, the list its
value travels in, the pointers to them and the sort's index (measured: 216 bytes a record
for a million word-count records, 10.7 MB encoded)."""

WRITE_BATCH = 8192
"""Output records formatted and written at a time."""

Fetch = Callable[[str, Segment], Iterable[bytes]]


class FetchFailed(GeryonError):
    """A map output could not be read (its node died, or the file is gone): run that map again."""

    failure_kind = FailureKind.FETCH

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"cannot fetch map output {location}: {reason}")
        self.location = location


def _kind(exc: Exception) -> FailureKind:
    """`classify`, where only a full chunk (`DiskFull`), a lost map output or memory is anything but
    the job's own failure: the reduce's input is map output, not a disk copy to fail over."""
    kind = classify(exc)
    if kind in (FailureKind.FETCH, FailureKind.MEMORY) or isinstance(exc, DiskFull):
        return kind
    return FailureKind.USER


def _failure(job: Job, task: ReduceTask, current: Any, exc: Exception) -> tuple[str, str]:
    """The message and detail of a failed reduce attempt."""
    if isinstance(exc, CommandFailed):
        assert job.reduce is not None
        return f"reduce task {task.id} failed: {job.reduce.describe()}: {exc}", "\n".join(exc.stderr_tail)
    if isinstance(exc, (DiskFull, FetchFailed)):
        return f"reduce task {task.id} failed: {exc}", ""
    if isinstance(exc, MemoryError):
        return (f"reduce task {task.id} ran out of memory (MemoryError) with --sort-budget "
                f"{memory.describe(job.sort_budget)}: lower --sort-budget or -j"), ""
    at = f" at key {describe_key(current)}" if current is not None else ""
    if isinstance(exc, GeryonError):
        return f"reduce task {task.id}{at} failed: {exc}", ""
    return f"reduce task {task.id}{at} failed: {type(exc).__name__}: {exc}", traceback_tail(exc)


def local_fetch(location: str, seg: Segment) -> Iterable[bytes]:
    """Read a segment of a map output file on this machine."""
    return file_chunks(location, seg.offset, seg.length)


def staged_name(job: Job, task: ReduceTask) -> str:
    return f"{task.staging}/{staged_part_name(job.name, task.index, task.attempt)}"


class _Reducing:
    """The state of one reduce attempt, so that failures can name the key."""

    def __init__(self, job: Job, task: ReduceTask, fetch: Fetch) -> None:
        self.job, self.task, self.fetch = job, task, fetch
        self.current: Any = None
        self.groups = 0
        self.records_out = 0
        self.merges = 0  # merges of map outputs into files before the final merge
        inputs = [(loc, s) for loc, s in task.inputs if s.records]
        self.inputs = inputs
        # map outputs kept as lines (`rawlines`): merged as lines when all are; else read as msgpack
        self.lines = bool(inputs) and all(s.lines for _, s in inputs)
        if not self.lines and any(s.lines for _, s in inputs):
            self.fetch = partial(generic_fetch, fetch)
        kinds = {s.kind for _, s in inputs}
        self.mixed = len(kinds) > 1 or "mixed" in kinds
        self.nbytes = sum(s.length for _, s in inputs)
        self.nrecords = sum(s.records for _, s in inputs)

    # -- grouped input --------------------------------------------------------------
    def in_memory(self) -> bool:
        return self.nbytes * MEMORY_FACTOR + self.nrecords * RECORD_BYTES <= self.job.sort_budget

    def groups_in_memory(self) -> Iterator[tuple[Any, Iterator]]:
        keys: list = []
        vals: list = []
        for loc, seg in self.inputs:
            for single, ks, vs in iter_blocks(self.fetch(loc, seg)):
                keys.extend(ks)
                vals.extend([[v] for v in vs] if single else vs)
        if len(self.inputs) > 1:
            if self.mixed:
                idx = sorted(range(len(keys)), key=lambda i: order.total_key(keys[i]))
            else:
                idx = order.argsort(keys)
            keys = list(map(keys.__getitem__, idx))
            vals = list(map(vals.__getitem__, idx))
        # where each key's records start, found in C (a Python step per record cost more than the
        # job's own reduce of an inverted index); `!=` between neighbours, as `==` grouped them
        starts = [0, *itertools.compress(range(1, len(keys)), map(operator.ne, keys, itertools.islice(keys, 1, None)))]
        if not keys:
            return
        chain = itertools.chain.from_iterable
        for i, j in zip(starts, [*starts[1:], len(keys)]):
            self.groups += 1
            yield keys[i], (iter(vals[i]) if j == i + 1 else chain(vals[i:j]))

    def flat(self) -> bool:
        """Whether the records may go out ungrouped (`flat_batches`): they fit in memory, and no
        step needs them a key at a time (an identity or streaming reduce, no sorted values, no hooks)."""
        job = self.job
        return (not job.sort_values and job.reduce_init is None and job.reduce_final is None
                and (job.reduce is None or job.reduce.streaming) and self.in_memory())

    def flat_batches(self) -> Iterator[tuple[list, list]]:
        """Every (key, value) pair in key order, values of a key in input order, as (keys, values)
        batches of WRITE_BATCH: what `groups_in_memory` gives, without a Python step per key."""
        keys: list = []
        vals: list = []
        for loc, seg in self.inputs:
            for single, ks, vs in iter_blocks(self.fetch(loc, seg)):
                if single:
                    keys.extend(ks)
                    vals.extend(vs)
                else:
                    for k, vl in zip(ks, vs):
                        keys.extend(itertools.repeat(k, len(vl)))
                        vals.extend(vl)
        if len(self.inputs) > 1:
            idx = (sorted(range(len(keys)), key=lambda i: order.total_key(keys[i])) if self.mixed
                   else order.argsort(keys))
            keys = list(map(keys.__getitem__, idx))
            vals = list(map(vals.__getitem__, idx))
        if keys:
            self.groups = 1 + sum(map(operator.ne, keys, itertools.islice(keys, 1, None)))
        for i in range(0, len(keys), WRITE_BATCH):
            yield keys[i:i + WRITE_BATCH], vals[i:i + WRITE_BATCH]

    def merge_dir(self) -> str:
        """Where this attempt's merge passes write (next to its part file; removed after)."""
        return os.path.join(self.task.out_root, staged_name(self.job, self.task) + ".merge")

    def groups_streaming(self) -> Iterator[tuple[Any, Iterator]]:
        sources = [(partial(self.fetch, loc, seg), seg.kind) for loc, seg in self.inputs]
        fan = merge_fan_in(self.job.sort_budget)
        spill_dir = None
        try:
            if len(sources) > fan:  # each open stream holds a read chunk and a decoded block
                spill_dir = self.merge_dir()
                os.makedirs(spill_dir, exist_ok=True)
                sources, self.merges = narrow(sources, fan, spill_dir)
                counters.increment_counter("geryon", "reduce_merges", self.merges)
                log.debug("reduce %s: %d map outputs merged to %d in %d merges", self.task.id,
                          len(self.inputs), len(sources), self.merges)
            streams = [iter_records(open_()) for open_, _ in sources]
            merged = order.merge(streams, mixed=self.mixed)
            for key, records in itertools.groupby(merged, key=_first):
                self.groups += 1
                yield key, itertools.chain.from_iterable(r[1] for r in records)
        finally:
            if spill_dir is not None:
                shutil.rmtree(spill_dir, ignore_errors=True)

    def grouped(self) -> Iterator[tuple[Any, Iterator]]:
        """(key, values) groups in key order, values lazily (sorted, with the job's `sort_values`)."""
        groups = self.groups_in_memory() if self.in_memory() else self.groups_streaming()
        if not self.job.sort_values:
            return groups
        return ((key, iter(order.sorted_values(values))) for key, values in groups)

    # -- reducing ---------------------------------------------------------------------
    def python_lines(self) -> Iterator[bytes]:
        """The part file's bytes, for a Python (or absent) reduce."""
        job = self.job
        if job.reduce is not None and job.sum_reduce:
            yield from self._sum_lines()
            return
        fmt = job.format
        if self.flat():   # the identity reduce
            for keys, vals in self.flat_batches():
                self.records_out += len(keys)
                yield encode_records(keys, vals, fmt)
            return
        for keys, values in self._reduced_batches():
            yield encode_records(keys, values, fmt)

    def _sum_lines(self) -> Iterator[bytes]:
        job = self.job
        # All keys str and text output: aggregate and sort the keys' UTF-8 bytes.
        kinds = {s.kind for _, s in self.inputs}
        raw = job.format == "text" and kinds <= {_STR_KIND}
        as_bytes = raw or (job.format == "text" and kinds == {_BYTES_KIND})  # keys arrive as bytes
        unpack = raw_block_stream if raw else iter_blocks
        blocks = (b for loc, seg in self.inputs for b in unpack(self.fetch(loc, seg)))
        one_sorted = len(self.inputs) == 1 and self.inputs[0][1].ordered
        for keys, sums in sum_blocks(blocks, job.sort_budget, self.mixed, already_sorted=one_sorted):
            self.groups += len(keys)
            self.records_out += len(keys)
            data = format_bytes_lines(keys, sums) if as_bytes else None
            if data is None:
                if raw:
                    keys = [k.decode("utf-8", "surrogateescape") for k in keys]
                data = encode_records(keys, sums, job.format)
            yield data

    def _reduced_batches(self) -> Iterator[tuple[list, list]]:
        """The reduce's output, (keys, values) a batch at a time."""
        job = self.job
        reducer = job.reduce.func if job.reduce is not None else None
        out_k: list = []
        out_v: list = []
        if job.reduce_init is not None:   # mrjob's reducer_init: once per task, before the first key
            for k2, v2 in hook_pairs(job.reduce_init.func(), "reduce_init"):  # type: ignore[misc]
                out_k.append(k2)
                out_v.append(v2)
        for key, values in self.grouped():
            self.current = key
            if reducer is None:  # identity reduce: every value
                for v in values:
                    out_k.append(key)
                    out_v.append(v)
            else:
                res = reducer(key, values)
                if type(res) in _PLAIN:   # a value (the common case: two failed hasattr cost more)
                    out_k.append(key)
                    out_v.append(res)
                elif res is None:
                    pass
                elif hasattr(res, "__next__") and hasattr(res, "send"):
                    for pair in res:
                        try:
                            k2, v2 = pair
                        except (TypeError, ValueError):
                            raise GeryonError(f"reduce must yield (key, value) pairs, got {pair!r}") from None
                        out_k.append(k2)
                        out_v.append(v2)
                else:
                    out_k.append(key)
                    out_v.append(res)
            if len(out_k) >= WRITE_BATCH:
                self.records_out += len(out_k)
                yield out_k, out_v
                out_k, out_v = [], []
        self.current = None
        if job.reduce_final is not None:  # ... and reducer_final, after the last
            for k2, v2 in hook_pairs(job.reduce_final.func(), "reduce_final"):  # type: ignore[misc]
                out_k.append(k2)
                out_v.append(v2)
                if len(out_k) >= WRITE_BATCH:
                    self.records_out += len(out_k)
                    yield out_k, out_v
                    out_k, out_v = [], []
        if out_k:
            self.records_out += len(out_k)
            yield out_k, out_v

    def input_lines(self) -> Iterator[bytes]:
        """The sorted `key<TAB>value` lines a streaming reducer reads.

        After a streaming map, its keys and values as they were in its lines (Hadoop Streaming's:
        tabs in the key with --key-fields, and in the value, unescaped); else as text output
        writes them (`codec.text_field`: tabs and newlines escaped)."""
        tf = line_field if self.job.map.streaming else text_field
        if self.lines:   # merged as they are (`rawlines`), in passes past the budget's fan-in
            merge = LinesMerge([partial(self.fetch, loc, seg) for loc, seg in self.inputs],
                               merge_fan_in(self.job.sort_budget), self.merge_dir())
            try:
                yield from merge.lines()
            finally:
                self.groups, self.merges = merge.groups, merge.merges
            return
        if self.flat():
            for keys, vals in self.flat_batches():
                yield _input_text(keys, vals, tf).encode("utf-8", "surrogateescape")
            return
        batch: list[str] = []
        for key, values in self.grouped():
            k = tf(key)
            batch.extend([f"{k}\t{tf(v)}\n" for v in values])
            if len(batch) >= WRITE_BATCH:
                yield "".join(batch).encode("utf-8", "surrogateescape")
                batch = []
        if batch:
            yield "".join(batch).encode("utf-8", "surrogateescape")


def line_field(obj: Any) -> str:
    """A streaming map's key or value, for a streaming reducer's line: a str as it came (from a
    line: no newline in it), anything else (what a Python combine made) as `codec.text_field`."""
    if type(obj) is str and "\n" not in obj:
        return obj
    return text_field(obj)


def _input_text(keys: list, vals: list, tf: Callable[[Any], str]) -> str:
    """A streaming reducer's input lines for a batch of pairs, as `input_lines` writes each."""
    if tf is line_field and _plain_lines(keys) and _plain_lines(vals):   # str from lines: as they came
        return "".join(map("{}\t{}\n".format, keys, vals))
    if tf is text_field:
        return format_lines(keys, vals, "text")
    return "".join([f"{tf(k)}\t{tf(v)}\n" for k, v in zip(keys, vals)])


def _plain_lines(items: list) -> bool:
    """All str, none holding a newline (checked in C, on one joined string)."""
    return not (set(map(type, items)) - {str}) and "\n" not in "\x00".join(items)


_PLAIN = frozenset({str, int, float, bytes, bool, list, dict})
"""Types a reduce returns as its one value (never a generator of pairs)."""

_STR_KIND = "1"  # order.key_kind of str keys
_BYTES_KIND = "2"  # ... and of bytes keys


def _first(pair: tuple) -> Any:
    return pair[0]


@collecting_rarely   # a task builds millions of small containers: see taskgc
def run_reduce_task(job: Job, task: ReduceTask, fetch: Fetch = local_fetch) -> TaskResult:
    """Run `task` of `job` to completion and report."""
    started = time.monotonic()
    counters.reset()
    result = TaskResult(task=task.id, attempt=task.attempt, ok=False)
    state = _Reducing(job, task, fetch)
    result.bytes_in = state.nbytes
    out_fs = ChunkFS(task.out_root)
    name = staged_name(job, task)
    try:
        out_fs.makedirs(task.staging, recreate=True)
        with out_fs.openbin(name, "wb") as out:
            if job.map_only:   # part i is map i's output, already formatted
                for data in copy_segment(task.inputs, fetch):
                    out.write(data)
                state.records_out = state.nrecords
            elif job.reduce is not None and job.reduce.streaming:
                env = {"GERYON_TASK": task.id, **task_env(job, streaming=True)}
                assert job.reduce.command is not None
                with StreamingProcess(job.reduce.command, state.input_lines(), cwd=task.out_root, env=env) as proc:
                    n = 0
                    for block in proc.blocks():   # whole lines, copied as they come
                        out.write(block)
                        n += block.count(b"\n")
                    proc.wait()
                state.records_out = n
            else:
                for data in state.python_lines():
                    out.write(data)
        result.ok = True
        result.output = name
        result.records_in = state.groups if not job.map_only else state.nrecords
        result.records_out = state.records_out
        result.bytes_out = out_fs.getsize(name)
    except Exception as exc:  # the user's reduce raised, a map output could not be read, or the part written
        result.error_kind = _kind(exc)
        result.error, result.detail = _failure(job, task, state.current, exc)
        if isinstance(exc, FetchFailed):
            result.lost_input = exc.location
    finally:
        result.counters = counters.snapshot()
        result.seconds = time.monotonic() - started
    if not result.ok:
        try:
            out_fs.remove(name)
        except Exception:
            pass
        shutil.rmtree(state.merge_dir(), ignore_errors=True)  # a failure left its merge passes' files
    return result
