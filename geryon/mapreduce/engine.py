"""The job driver: plan map tasks, run them on cpus, shuffle, reduce, commit.

Pull-based: each cpu has slots, and a free slot takes the next pending task. A task
attempt that fails for a reason outside the user's code (a worker died, a disk filled up)
is retried, up to `max_attempts`; a failure of the user's own code is deterministic and
fails the job at once with its message. Nothing is committed until every reduce task has
succeeded; then each part file is renamed into place. Not here: the tasks themselves
(`maptask`, `reducetask`) and where cpus come from (`cpu`, the cluster modules).
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from geryon.mapreduce import counters as counters_mod
from geryon.mapreduce import memory
from geryon.attempt import AttemptState, FailureKind, classify
from geryon.disks.chunk import TEMP_MARK
from geryon.mapreduce.cpu import Cpu
from geryon.disks import Disk
from geryon.errors import GeryonError, JobFailed, UnknownDisk
from geryon.mapreduce.job import Job
from geryon.mapreduce.job import DEFAULT_SPLIT_SIZE
from geryon.records.readers import check_record_sizes, may_cut_files
from geryon.records.split import Split, list_files, only_under, list_local_files, plan_balanced, plan_splits, split_count_for
from geryon.mapreduce.task import MapTask, ReduceTask, TaskResult

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 4
"""Attempts per task before the job fails (Hadoop's default)."""


class Progress(Protocol):
    """What the driver tells whoever watches a job."""

    def phase(self, name: str, total: int, nbytes: int) -> None: ...

    def task_done(self, result: TaskResult) -> None: ...

    def message(self, text: str) -> None: ...


class _Silent:
    def phase(self, name: str, total: int, nbytes: int) -> None:
        pass

    def task_done(self, result: TaskResult) -> None:
        pass

    def message(self, text: str) -> None:
        pass


@dataclass
class PhaseStats:
    tasks: int = 0
    records_in: int = 0
    records_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    attempts: int = 0


@dataclass
class JobReport:
    """What a finished job did: its part files, counters and per-phase figures."""

    job_id: str
    name: str
    out_dir: str
    parts: list[str]
    format: str
    map: PhaseStats = field(default_factory=PhaseStats)
    reduce: PhaseStats = field(default_factory=PhaseStats)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    shuffled: int = 0  # bytes of map output read by reducers
    slowest: list[tuple[str, str, float]] = field(default_factory=list)  # (attempt, cpu, seconds)
    failed_attempts: int = 0
    urls: list[str] = field(default_factory=list)  # cluster: where the parts are on the nodes


def new_job_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


_JOB_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


def check_job_name(name: str) -> str:
    if not _JOB_NAME.match(name) or name.startswith("."):
        raise GeryonError(f"bad job name {name!r}: use letters, digits, '.', '_', '+' or '-'")
    return name


def plan(job: Job, disks: Sequence[Disk], slots: int = 1) -> list[tuple[Split, Disk]]:
    """Cut every input disk into splits, in disk order then file order.

    With no split size set on the job, the size adapts to the input and the slots
    (`split.split_size_for`); the plan never depends on timing, so output bytes do not.
    """
    listed = [(d, _chosen_files(d) if d.files else
               only_under(d.only, list_local_files(d.path) if d.path else list_files(d.fs))) for d in disks]
    if not job.map.streaming:  # a file read whole as one record must fit in the budget
        for d, files in listed:
            check_record_sizes(job.reader, d.name, files, job.sort_budget)
    # Only line records of uncompressed files may be cut into byte ranges (readers.may_cut).
    cuts = {id(d): may_cut_files(job.reader, [p for p, _ in files]) for d, files in listed}
    splits: list[tuple[Split, Disk]] = []
    if job.split_size is not None:
        for disk, files in listed:
            splits.extend((s, disk) for s in plan_splits(disk.name, files, job.split_size, cut_files=cuts[id(disk)]))
        return splits
    total = sum(n for _, files in listed for _, n in files)
    count = split_count_for(total, slots, DEFAULT_SPLIT_SIZE)
    size = max(1, -(-total // count))
    for disk, files in listed:
        disk_total = sum(n for _, n in files)
        if cuts[id(disk)] and any(n > size for _, n in files):
            # big files are cut into line-aligned ranges of the target size
            splits.extend((s, disk) for s in plan_splits(disk.name, files, size, cut_files=True))
        else:
            share = max(1, round(count * disk_total / total)) if total else 1
            splits.extend((s, disk) for s in plan_balanced(disk.name, files, share))
    return splits


def _chosen_files(disk: Disk) -> list[tuple[str, int]]:
    """The files a file or glob input named, with their sizes (`disks.resolve_inputs`)."""
    out = []
    for name in disk.files:
        try:
            out.append((name, disk.fs.getsize(name)))
        except Exception as exc:   # fs errors: gone since the job was asked for
            raise UnknownDisk(f"{disk.name}{name}: {exc}") from exc
    return out


class Driver:
    """Runs one job to its commit on a set of cpus."""

    def __init__(self, job: Job, cpus: Sequence[Cpu], job_id: str, progress: Progress | None = None,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, workdir: str | None = None,
                 retry_kinds: tuple[FailureKind, ...] = (FailureKind.SYSTEM, FailureKind.MEMORY), record: object = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.job = job
        self.echo = echo  # called with each line a task printed, prefixed with its attempt's id
        self.record = record  # a geryon.mapreduce.jobstore.JobRecord, or None
        self.cpus = list(cpus)
        self.job_id = job_id
        self.progress = progress or _Silent()
        self.max_attempts = max_attempts
        self._workdir_parent = workdir
        # Which failures another attempt may cure. In local mode a full disk stays full;
        # a cluster adds "disk_full" because the next attempt runs on another cpu.
        self.retry_kinds = retry_kinds

    def run(self, disks: Sequence[Disk], out_dir: str) -> JobReport:
        started = time.monotonic()
        job = self.job
        check_job_name(job.name)
        problem = memory.budget_problem(job.sort_budget)
        if problem is not None:  # the task would be killed by the kernel, or (-j 1) the driver with it
            raise GeryonError(problem)
        os.makedirs(out_dir, exist_ok=True)
        out_dir = os.path.abspath(out_dir)
        staging = f"{TEMP_MARK}{self.job_id}"  # hidden in listings, removed on failure
        work = tempfile.mkdtemp(prefix=f"geryon-{self.job_id}-", dir=self._workdir_parent)
        # A streaming reducer writes its own text lines, whatever format the job names.
        fmt = "text" if job.reduce is not None and job.reduce.streaming else job.format
        report = JobReport(self.job_id, job.name, out_dir, [], fmt)
        self._slow: list[tuple[float, str, str]] = []
        try:
            missing = [d.name for d in disks if not d.path]
            if missing:
                raise GeryonError(f"{missing[0]}: only local disks can be read in local mode")
            planned = plan(job, disks, sum(c.slots for c in self.cpus))
            maps = [MapTask(i, 0, s, d.path or "", work, d.replicas) for i, (s, d) in enumerate(planned)]
            if self.record is not None:
                self.record.update_info({"maps": len(maps), "cpus": [c.name for c in self.cpus]})
            self.progress.phase("map", len(maps), sum(s.size for s, _ in planned))
            t0 = time.monotonic()
            map_results = self._run_all(maps, report.map)
            report.map.seconds = time.monotonic() - t0
            reduces = [
                ReduceTask(r, 0, tuple((res.output, res.segments[r]) for res in map_results), out_dir, staging)
                for r in range(job.partitions)
            ]
            shuffle = sum(res.segments[r].length for res in map_results for r in range(job.partitions))
            self.progress.phase("reduce", len(reduces), shuffle)
            t0 = time.monotonic()
            reduce_results = self._run_all(reduces, report.reduce)
            report.reduce.seconds = time.monotonic() - t0
            report.shuffled = shuffle
            report.parts = self._commit(out_dir, staging, reduce_results)
            report.slowest = [(t, c, sec) for sec, t, c in sorted(self._slow, reverse=True)[:5]]
            counters_mod.merge(report.counters, [r.counters for r in map_results + reduce_results])
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(os.path.join(out_dir, staging), ignore_errors=True)
        report.seconds = time.monotonic() - started
        return report

    def _run_all(self, tasks: Sequence[MapTask | ReduceTask], stats: PhaseStats) -> list[TaskResult]:
        """Run tasks on the cpus' free slots until all succeed; results in task order."""
        pending: list[MapTask | ReduceTask] = list(reversed(tasks))
        results: dict[int, TaskResult] = {}
        running: dict[cf.Future[TaskResult], tuple[MapTask | ReduceTask, Cpu]] = {}
        busy = {id(c): 0 for c in self.cpus}
        stats.tasks = len(tasks)
        try:
            while pending or running:
                for cpu in self.cpus:
                    while pending and busy[id(cpu)] < cpu.slots:
                        task = pending.pop()
                        if self.record is not None:
                            self.record.attempt_started(task.id, task.attempt, cpu.name, _input_of(task))
                        fut = cpu.submit(self.job_id, task)
                        running[fut] = (task, cpu)
                        busy[id(cpu)] += 1
                        stats.attempts += 1
                done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    task, cpu = running.pop(fut)
                    busy[id(cpu)] -= 1
                    result = self._result_of(fut, task)
                    self._show_log(task, result)
                    if self.record is not None:
                        self.record.attempt_ended(task.id, task.attempt, AttemptState.DONE if result.ok else AttemptState.FAILED,
                                                  error=result.error, records_in=result.records_in,
                                                  records_out=result.records_out, bytes_in=result.bytes_in,
                                                  bytes_out=result.bytes_out, output=result.output,
                                                  peak_rss=result.peak_rss)
                    if result.ok:
                        self._slow.append((result.seconds, str(task.attempt_id), cpu.name))
                        results[task.index] = result
                        stats.records_in += result.records_in
                        stats.records_out += result.records_out
                        stats.bytes_in += result.bytes_in
                        stats.bytes_out += result.bytes_out
                        self.progress.task_done(result)
                        continue
                    retry = result.error_kind in self.retry_kinds and task.attempt + 1 < self.max_attempts
                    if retry:
                        # The full line is said once, when the task has used up its attempts.
                        why = "was killed for memory" if result.error_kind == FailureKind.MEMORY else f"failed: {result.error}"
                        log.warning("%s attempt %d %s; retrying", task.id, task.attempt, why)
                        self.progress.message(f"retrying {task.id}: {why}")
                        pending.append(_next_attempt(task))
                        continue
                    raise JobFailed(_failure_message(result, task))
        except Exception:
            for fut in running:
                fut.cancel()
            # Wait for attempts already running, so none writes after the clean-up.
            cf.wait(list(running))
            raise
        except BaseException:  # Ctrl-C: do not wait for running tasks; stop them
            for cpu in self.cpus:
                cpu.abort()
            raise
        return [results[t.index] for t in tasks]

    def _show_log(self, task: MapTask | ReduceTask, result: TaskResult) -> None:
        """Keep what the attempt printed in its log (`geryon logs`) and pass it to `echo`."""
        if not result.log:
            return
        if self.record is not None:
            self.record.stderr(task.id, task.attempt, result.log.encode("utf-8", errors="replace"))
        if self.echo is not None:
            for line in result.log.splitlines():
                self.echo(f"{task.attempt_id}: {line}")

    def _result_of(self, fut: cf.Future[TaskResult], task: MapTask | ReduceTask) -> TaskResult:
        try:
            return fut.result()
        except Exception as exc:  # the worker died, or the task could not be sent
            kind = classify(exc, otherwise=FailureKind.SYSTEM)
            if kind == FailureKind.MEMORY:
                error = memory.killed_message(task.id, self.job.sort_budget, memory.memory_limit())
            else:
                error = f"{task.id} attempt {task.attempt} lost: {exc}"
            return TaskResult(task=task.id, attempt=task.attempt, ok=False, error_kind=kind, error=error)

    def _commit(self, out_dir: str, staging: str, results: list[TaskResult]) -> list[str]:
        """Rename every committed attempt to `part-0000r`, then write `_SUCCESS` (`geryon.mapreduce.outdir`).

        Every destination is checked first, so that a name taken by a directory fails the
        job before any part is replaced: a job commits all its parts or none.
        """
        from geryon.mapreduce import outdir

        return outdir.commit(out_dir, [os.path.join(out_dir, res.output) for res in results], self.job_id,
                             self.job.name)


def _input_of(task: MapTask | ReduceTask) -> str:
    return task.split.describe() if isinstance(task, MapTask) else f"partition {task.index}"


def _next_attempt(task: MapTask | ReduceTask) -> MapTask | ReduceTask:
    from dataclasses import replace

    return replace(task, attempt=task.attempt + 1)


def _failure_message(result: TaskResult, task: MapTask | ReduceTask) -> str:
    msg = result.error
    if task.attempt > 0:
        msg += f" (after {task.attempt + 1} attempts)"
    if result.detail:
        msg += "\n" + result.detail
    return msg

