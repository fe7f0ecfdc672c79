"""Total-order output (`--total-order`, Hadoop's TotalOrderPartitioner with its InputSampler).

Before the maps run, sampling tasks run the job's map over small pieces of the input spread
evenly over it (64 KiB line ranges where records are lines, whole files otherwise) and each
keeps a reservoir sample of the keys its map emits (`KeySample`). The driver sorts the keys
in the engine's order (`geryon.mapreduce.order`) and picks R - 1 split points (`split_points`),
so that each part gets about as many sampled pairs as any other; a key heavier than a part's
share gets a part to itself (a key is never cut). The maps then partition by range
(`geryon.mapreduce.partition.RangePartition`), so part r's keys all sort before part r+1's
and the parts read in order are globally sorted.

The pieces and the sampling tasks are a function of the input's files and R only (never of
the splits, the slots or the timing), so the same input gives the same parts however many
workers run it. Not here: running the tasks (`sample` is given the driver's cpus and
policy), the map task (`geryon.mapreduce.maptask`).
"""
from __future__ import annotations

import bisect
import concurrent.futures as cf
import logging
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import groupby
from typing import TYPE_CHECKING, Any

from geryon.errors import JobFailed
from geryon.mapreduce.attempt import AttemptId, FailureKind, classify
from geryon.mapreduce.codec import pack_block
from geryon.mapreduce.order import total_key
from geryon.mapreduce.task import MapTask, TaskResult
from geryon.records.readers import may_cut
from geryon.records.split import FileRange, Split

if TYPE_CHECKING:
    from geryon.mapreduce.engine import Driver

log = logging.getLogger(__name__)

SAMPLE_FRACTION = 0.01
"""Share of the input's bytes the sampling tasks read ..."""

SAMPLE_MIN_BYTES = 1 << 20
"""... but at least this much (all of a smaller input) ..."""

SAMPLE_MAX_BYTES = 16 << 20
"""... and at most this much."""

PIECE_BYTES = 64 << 10
"""Bytes of one sampled piece of a line file (its lines: those starting in it)."""

PIECES_PER_TASK = 32
"""Pieces of one disk read by one sampling task."""

KEYS_PER_PART = 1000
"""Sampled keys wanted per part ..."""

MIN_KEYS, MAX_KEYS = 10_000, 100_000
"""... at least and at most (Hadoop's RandomSampler takes 10,000 by default)."""


class KeySample:
    """A sampling map task's buffer: a reservoir of at most `size` of the keys added (Vitter's
    algorithm R), seeded by the task, so that a task keeps the same keys every time."""

    spills = 0

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.pairs_in = 0
        self._keys: list[Any] = []
        self._rng = random.Random(seed)

    def add(self, out: Any) -> None:
        """What one map call returned: a mapping, an iterable of pairs, or None."""
        if out is None:
            return
        if isinstance(out, Mapping):
            out = out.items()
        keys, size, rng = self._keys, self.size, self._rng
        for key, _ in out:
            seen = self.pairs_in
            self.pairs_in = seen + 1
            if seen < size:
                keys.append(key)
            else:
                j = rng.randrange(seen + 1)
                if j < size:
                    keys[j] = key

    def keys(self) -> list[Any]:
        """The sample. Raises RecordError for a key the engine cannot carry."""
        pack_block(True, self._keys, [])
        return list(self._keys)


def wanted_keys(partitions: int) -> int:
    """Keys the whole sample keeps for R = `partitions`."""
    return max(MIN_KEYS, min(MAX_KEYS, KEYS_PER_PART * partitions))


def sample_tasks(maps: Sequence[MapTask], reader: str, partitions: int) -> list[MapTask]:
    """The sampling tasks of a job whose maps are `maps` (in plan order).

    Pieces sit at even steps of the input's bytes taken in plan order (disks in order, files
    in name order); the tasks are the pieces of one disk, PIECES_PER_TASK at a time. A file
    whose records cannot be cut (not lines, or compressed) is read whole when a step lands in it.
    """
    ranges: list[tuple[MapTask, FileRange]] = [(m, r) for m in maps for r in m.split.ranges]
    total = sum(r.end - r.start for _, r in ranges)
    if total == 0:
        return []
    budget = min(SAMPLE_MAX_BYTES, max(SAMPLE_MIN_BYTES, int(total * SAMPLE_FRACTION)))
    pieces: list[tuple[MapTask, FileRange]] = []
    if budget >= total:   # a small input is sampled whole
        pieces = list(ranges)
    else:
        count = max(1, budget // PIECE_BYTES)
        step = total / count
        at, j, whole = 0, 0, set()
        for m, r in ranges:
            size = r.end - r.start
            while j < count and (j + 0.5) * step < at + size:
                offset = r.start + int((j + 0.5) * step) - at
                if may_cut(reader, r.path):
                    pieces.append((m, FileRange(r.path, offset, offset + PIECE_BYTES)))
                elif (m.split.disk, r.path) not in whole:
                    whole.add((m.split.disk, r.path))
                    pieces.append((m, FileRange(r.path, 0, _file_end(ranges, m.split.disk, r.path))))
                j += 1
            at += size
    tasks: list[MapTask] = []
    keys = wanted_keys(partitions)
    for _, group in groupby(pieces, key=lambda p: p[0].split.disk):
        disk_pieces = list(group)
        for i in range(0, len(disk_pieces), PIECES_PER_TASK):
            chunk = disk_pieces[i:i + PIECES_PER_TASK]
            first = chunk[0][0]
            share = max(1, -(-keys * len(chunk) // len(pieces)))
            split = Split(first.split.disk, tuple(r for _, r in chunk))
            tasks.append(replace(first, index=len(tasks), attempt=0, split=split, sample=share, bounds=None))
    return tasks


def _file_end(ranges: list[tuple[MapTask, FileRange]], disk: str, path: str) -> int:
    return max(r.end for m, r in ranges if m.split.disk == disk and r.path == path)


def split_points(keys: Iterable[Any], partitions: int) -> tuple:
    """R - 1 (or fewer) distinct, sorted keys cutting the sample into parts as even as keys allow.

    Keys are never cut, so the largest part is at least the heaviest key's count: first the
    smallest largest part that R parts can reach is found (`cap`: a binary search, each step
    a greedy fill); then the sample's distinct keys are walked in order, a part ending before
    the key that would take it past its share of what is left (or past `cap`), as long as
    the keys after it still fit in the parts left. Part r holds bounds[r-1] <= k < bounds[r].
    """
    ordered = sorted(keys, key=total_key)
    if partitions <= 1 or not ordered:
        return ()
    counts: list[list[Any]] = []
    for k in ordered:
        if counts and counts[-1][0] == k:
            counts[-1][1] += 1
        else:
            counts.append([k, 1])
    n = len(counts)
    prefix = [0]
    for _, c in counts:
        prefix.append(prefix[-1] + c)
    total = prefix[-1]

    def after(i: int, cap: int) -> int:   # where a part starting at key i ends when filled to cap
        return max(bisect.bisect_right(prefix, prefix[i] + cap) - 1, i + 1)

    def parts_for(cap: int) -> int:
        i, parts = 0, 0
        while i < n and parts <= partitions:
            i, parts = after(i, cap), parts + 1
        return parts

    lo, hi = max(max(c for _, c in counts), -(-total // partitions)), total
    while lo < hi:
        mid = (lo + hi) // 2
        if parts_for(mid) <= partitions:
            hi = mid
        else:
            lo = mid + 1
    cap = lo
    need = [0] * (n + 1)   # need[i]: parts the keys from i on take at `cap`
    for i in range(n - 1, -1, -1):
        need[i] = 1 + need[after(i, cap)]
    bounds: list[Any] = []
    left, parts_left, acc = total, partitions, 0
    for i, (k, c) in enumerate(counts):
        if acc and len(bounds) < partitions - 1:
            if acc + c > cap or (acc + c / 2 > left / parts_left and need[i] <= parts_left - 1):
                bounds.append(k)
                left -= acc
                parts_left -= 1
                acc = 0
        acc += c
    return tuple(bounds)


def sample(driver: Driver) -> tuple:
    """Run a total-order job's sampling tasks on the driver's cpus; its split points.

    An attempt lost with its cpu, or failed for a reason another attempt may cure, runs
    again on another cpu (at most `driver.max_attempts`); the map's own failure fails the job.
    """
    job = driver.job
    tasks = sample_tasks(driver.maps, job.reader, job.partitions)
    if not tasks:
        return ()
    started = time.monotonic()
    keys: list[Any] = []
    pending = list(tasks)
    tries = {t.index: 0 for t in tasks}
    running: dict[cf.Future[TaskResult], tuple[MapTask, Any]] = {}
    busy = {c: 0 for c in driver.cpus}
    policy = driver.policy
    retry = policy.retry_kinds | policy.requeue_kinds | {FailureKind.LOST, FailureKind.UNREACHABLE}
    try:
        while pending or running:
            for cpu in driver.cpus:
                while pending and busy[cpu] < cpu.slots:
                    task = pending.pop(0)
                    attempt = policy.map_attempt(replace(task, attempt=tries[task.index]))
                    tries[task.index] += 1
                    busy[cpu] += 1
                    try:
                        fut = cpu.submit(driver.job_id, attempt, None)
                    except Exception as exc:   # the cpu could not take it: as if lost at once
                        fut = cf.Future()
                        fut.set_exception(exc)
                    running[fut] = (attempt, cpu)
            if not running:
                break
            done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                task, cpu = running.pop(fut)
                busy[cpu] -= 1
                try:
                    result = fut.result()
                except Exception as exc:
                    result = TaskResult(task=task.id, attempt=task.attempt, ok=False,
                                        error_kind=classify(exc, otherwise=FailureKind.SYSTEM),
                                        error=f"{task.attempt_id} on {cpu.name} lost: {exc}")
                if result.ok:
                    keys.extend(result.sample)
                    continue
                aid = AttemptId(task.id, task.attempt)
                if result.error_kind in retry and tries[task.index] < driver.max_attempts:
                    log.info("sampling %s on %s failed (%s): running it again", aid, cpu.name, result.error)
                    pending.append(task)
                    continue
                text = f"sampling for --total-order: {result.error or f'{aid} failed'}"
                raise JobFailed(text + ("\n" + result.detail if result.detail else ""))
    except BaseException:
        for fut in running:
            fut.cancel()
        cf.wait(list(running))
        raise
    bounds = split_points(keys, job.partitions)
    text = (f"total order: {len(keys):,} keys sampled by {len(tasks)} task(s) in "
            f"{time.monotonic() - started:.2f}s, {len(bounds)} split point(s)")
    log.info("%s", text)
    if driver.record is not None:
        driver.record.event(text)
    return bounds
