"""The job driver, written once: plan map tasks, run attempts on cpus, shuffle, reduce, commit.

Pull-based: each cpu (`geryon.mapreduce.cpu.Cpu`) has slots, and a free slot takes the next pending
task; reduces start when every map output is in place. Every attempt has an id (`m3.a1`,
`geryon.mapreduce.attempt.AttemptId`); the first successful result of each task is the one used, any
other is ignored. A failed attempt is tried again when its `FailureKind` is one another
attempt may cure, up to `max_attempts`; anything else (the user's own code) fails the job at
once with its message. Nothing is committed until every reduce has succeeded.

What differs between this machine and a cluster is a `Policy` the driver consults, not a
second scheduler: where the splits are planned from, which failures are retried, locality
(a map waits a little for a slot on a node holding its input), whether a cpu can die and
take its outputs with it (fencing: a cpu declared dead delivers nothing more; its map
outputs are recomputed), lost map outputs recomputed, input copies found unreadable tried
last, and how the parts are committed (`geryon.mapreduce.policy`; the cluster's is
`geryon.mapreduce.clusterdriver.ClusterPolicy`). Not here: the tasks themselves (`maptask`, `reducetask`),
the cpus (`geryon.mapreduce.cpu`, `geryon.mapreduce.jobnodes.RemoteCpu`), the policies, the report's types
(`geryon.mapreduce.report`), what is done when an attempt ends (`geryon.mapreduce.outcomes`).
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from geryon.mapreduce import counters as counters_mod
from geryon.mapreduce import totalorder
from geryon.mapreduce.attempt import AttemptId, task_name
from geryon.mapreduce.cpu import Cpu
from geryon.errors import GeryonError, JobFailed
from geryon.mapreduce.job import Job
from geryon.mapreduce.outcomes import (EXTRA_FETCH_ROUNDS, UNREACHABLE_PAUSE, AttemptOutcomes, _Running, _Task,
                                       failure_message)
from geryon.mapreduce.policy import CpuLost, LocalPolicy, Policy, plan
from geryon.mapreduce.report import JobReport, PhaseStats, Progress, Silent
from geryon.mapreduce.task import MapTask, ReduceTask, TaskResult
from geryon.defaults import DEFAULT_MAX_ATTEMPTS

__all__ = ["DEFAULT_MAX_ATTEMPTS", "EXTRA_FETCH_ROUNDS", "UNREACHABLE_PAUSE", "CpuLost", "Driver", "JobReport",
           "LocalPolicy", "PhaseStats", "Policy", "Progress", "check_job_name", "failure_message", "new_job_id", "plan"]

log = logging.getLogger(__name__)

IDLE_PAUSE = 0.1
"""Seconds the driver waits when every pending task waits (a pause, locality) and none runs."""

SLOWEST = 5
"""Attempts in a report's slowest-attempts list."""


def new_job_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


_JOB_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


def check_job_name(name: str) -> str:
    if not _JOB_NAME.match(name) or name.startswith("."):
        raise GeryonError(f"bad job name {name!r}: use letters, digits, '.', '_', '+' or '-'")
    return name


class Driver(AttemptOutcomes):
    """Runs one job to its commit on a set of cpus, by a policy.

    Args:
        job: the job.
        cpus: where attempts run (`geryon.mapreduce.cpu.Cpu`).
        job_id: the job's id (names its temporary data, and its record).
        policy: the rules of where it runs (default: `LocalPolicy`, this machine).
        progress: what to tell about the job as it runs.
        max_attempts: failed attempts of one task before the job fails.
        workdir: local mode: where map outputs go (default: the system's temporary directory).
        record: a `geryon.mapreduce.jobstore.JobRecord` keeping the job's metadata, or None.
        echo: called with each line a task printed, prefixed with its attempt's id.
    """

    def __init__(self, job: Job, cpus: Sequence[Cpu], job_id: str, progress: Progress | None = None,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, workdir: str | None = None, record: Any = None,
                 echo: Callable[[str], None] | None = None, policy: Policy | None = None) -> None:
        self.job = job
        self.cpus = list(cpus)
        self.job_id = job_id
        self.progress = progress or Silent()
        self.max_attempts = max_attempts
        self.record = record
        self.echo = echo
        self.policy = policy if policy is not None else LocalPolicy(workdir)
        self.maps: list[MapTask] = []
        self.input_bytes = 0
        self.dead: set[Cpu] = set()   # cpus declared dead (the policy asks, sampling included)

    # -- the job ------------------------------------------------------------------------------
    def run(self, disks: Sequence[Any], out_dir: str | None = None) -> JobReport:
        started = time.monotonic()
        job = self.job
        check_job_name(job.name)
        # A streaming reducer writes its own text lines, whatever format the job names.
        # So does a map-only job's streaming mapper.
        streamed = job.reduce if not job.map_only else job.map
        fmt = "text" if streamed is not None and streamed.streaming else job.format
        try:
            report = JobReport(self.job_id, job.name, self.policy.begin(self, out_dir), [], fmt)
            self._prepare(disks)
            if job.total_order:   # split points from a sample of the map output, before the maps
                bounds = totalorder.sample(self)
                self.maps = [replace(m, bounds=bounds) for m in self.maps]
            self._schedule(report)
            report.parts = self._finish(report)
        finally:
            self.policy.end()
        report.seconds = time.monotonic() - started
        return report

    def _prepare(self, disks: Sequence[Any]) -> None:
        self.maps = self.policy.plan(self, disks)
        self.input_bytes = sum(m.split.size for m in self.maps)
        if self.record is not None:
            self.record.update_info({"maps": len(self.maps), "cpus": [c.name for c in self.cpus],
                                     **self.policy.info()})

    @property
    def partitions(self) -> int:
        """The reduce tasks, and parts: R, or one per map task for a map-only job."""
        return len(self.maps) if self.job.map_only else self.job.partitions

    # -- scheduling ---------------------------------------------------------------------------
    def _schedule(self, report: JobReport) -> None:
        M, R = len(self.maps), self.partitions
        now = time.monotonic()
        names = [task_name("map", i) for i in range(M)] + [task_name("reduce", r) for r in range(R)]
        self.tasks = {name: _Task(name, queued=now) for name in names}
        self.pending: list[str] = list(self.tasks)
        self.map_done: dict[int, tuple[TaskResult, Cpu]] = {}
        self.reduce_done: dict[int, tuple[TaskResult, Cpu]] = {}
        self.running: dict[cf.Future[TaskResult], _Running] = {}
        self.dead: set[Cpu] = set()
        self.excluded: set[Cpu] = set()
        self.cpu_failures: dict[Cpu, int] = {}
        self.busy = {c: 0 for c in self.cpus}
        self.slowest: list[tuple[float, str, str]] = []
        self._last_failure = ""
        self._rr = 0
        self._report = report
        report.map.tasks, report.reduce.tasks = M, R
        self.progress.phase("map", M, self.input_bytes)
        self._phase = "map"
        self._t0 = time.monotonic()
        self._drain()
        report.reduce.seconds = time.monotonic() - self._t0

    def _drain(self) -> None:
        """Dispatch and collect attempts until every reduce has a result and nothing runs."""
        M, R = len(self.maps), self.partitions
        try:
            while len(self.reduce_done) < R or self.running:
                if len(self.map_done) == M and self._phase == "map":
                    self._report.map.seconds = time.monotonic() - self._t0
                    self._t0 = time.monotonic()
                    self._phase = "reduce"
                    self.progress.phase("reduce", R, self._shuffle_bytes())
                self._dispatch()
                if not self.running:
                    if len(self.reduce_done) == R:
                        break
                    if not any(self._usable(c) for c in self.cpus):
                        raise JobFailed(self._no_cpus_message())
                    time.sleep(IDLE_PAUSE)   # tasks wait (a pause after an unreachable input, locality)
                    continue
                done, _ = cf.wait(list(self.running), timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    self._completed(fut, self.running.pop(fut))
        except Exception:
            for fut in self.running:
                fut.cancel()
            cf.wait(list(self.running))   # attempts already running end first: none writes after the clean-up
            raise
        except BaseException:  # Ctrl-C: do not wait for running attempts; stop them
            for fut in self.running:
                fut.cancel()
            for cpu in self.cpus:
                cpu.abort()
            raise

    def _shuffle_bytes(self) -> int:
        return sum(s.length for res, _ in self.map_done.values() for s in res.segments)

    def _usable(self, cpu: Cpu) -> bool:
        return cpu not in self.dead and cpu not in self.excluded

    def _no_cpus_message(self) -> str:
        gone = [c.name for c in self.cpus if not self._usable(c)]
        msg = f"no usable cpu left for {len(self.pending)} pending task(s): {', '.join(gone)} dead or excluded"
        return msg + (f"; last failure: {self._last_failure}" if self._last_failure else "")

    def _dispatch(self) -> None:
        maps_complete = len(self.map_done) == len(self.maps)
        n = len(self.cpus)
        order = [self.cpus[(self._rr + i) % n] for i in range(n)]
        self._rr = (self._rr + 1) % n
        usable = [c for c in self.policy.order(order, self.busy) if self._usable(c)]
        progress = True
        while progress and self.pending:
            progress = False
            for cpu in usable:          # one task per cpu per round: round robin
                if self.busy[cpu] >= cpu.slots:
                    continue
                key = self._choose(cpu, usable, maps_complete)
                if key is None:
                    continue
                self.pending.remove(key)
                self._start(self.tasks[key], cpu)
                progress = True

    def _choose(self, cpu: Cpu, usable: list[Cpu], maps_complete: bool) -> str | None:
        fallback = None
        now = time.monotonic()
        for key in self.pending:
            task = self.tasks[key]
            if not task.is_map and not maps_complete:
                continue
            if task.not_before > now:
                continue
            if cpu in task.tried and any(c not in task.tried for c in usable):
                continue          # another cpu has not tried this one yet
            homes = self.policy.homes(self.maps[task.index]) if task.is_map else set()
            if homes:
                if self.policy.home(cpu) in homes:
                    return key    # its input is on this node
                if now - task.queued < self.policy.locality_wait and any(
                        self.policy.home(c) in homes and self._usable(c) for c in self.cpus):
                    continue      # a node holding its input may free a slot soon
            if fallback is None:
                fallback = key
                if not homes:     # no map further on can be more at home here
                    break
        return fallback

    def _attempt_task(self, task: _Task, attempt: int) -> MapTask | ReduceTask:
        if task.is_map:
            return self.policy.map_attempt(replace(self.maps[task.index], attempt=attempt))
        if self.job.map_only:   # part i is map i's output (`geryon.mapreduce.maponly`)
            res, cpu = self.map_done[task.index]
            only = ((self.policy.map_output(res, cpu), res.segments[0]),)
            return self.policy.reduce_attempt(task.index, attempt, only)
        inputs = []
        for i in range(len(self.maps)):
            res, cpu = self.map_done[i]
            inputs.append((self.policy.map_output(res, cpu), res.segments[task.index]))
        return self.policy.reduce_attempt(task.index, attempt, tuple(inputs))

    def _start(self, task: _Task, cpu: Cpu) -> None:
        aid = AttemptId(task.id, task.attempts)
        task.attempts += 1
        task.tried.add(cpu)
        self.busy[cpu] += 1
        spec = self._attempt_task(task, aid.attempt)
        where = self.maps[task.index].split.describe() if task.is_map else f"partition {task.index}"
        if self.record is not None:
            self.record.attempt_started(task.id, aid.attempt, cpu.name, where)
        (self._report.map if task.is_map else self._report.reduce).attempts += 1
        try:
            fut = cpu.submit(self.job_id, spec, lambda data: self._log(aid, data))
        except Exception as exc:  # the cpu could not take it: as if lost at once
            fut = cf.Future()
            fut.set_exception(exc)
        self.running[fut] = _Running(task, aid, cpu, time.monotonic())
        self._counts()

    def _log(self, aid: AttemptId, data: bytes) -> None:
        """Keep what an attempt printed in its log (`geryon logs`) and pass it to `echo`."""
        if self.record is not None:
            self.record.stderr(aid.task, aid.attempt, data)
        if self.echo is not None:
            for line in data.decode(errors="replace").splitlines():
                self.echo(f"{aid}: {line}")

    def _counts(self) -> None:
        show = getattr(self.progress, "running", None)
        if show is not None:
            show(len(self.running), sum(t.failures for t in self.tasks.values()))

    def _event(self, text: str) -> None:
        log.info("%s", text)
        if self.record is not None:
            self.record.event(text)

    # -- commit -------------------------------------------------------------------------------
    def _finish(self, report: JobReport) -> list[str]:
        """Commit every part (the policy's way); a cpu lost meanwhile runs its tasks again."""
        while True:
            try:
                parts = self.policy.commit([self.reduce_done[r] for r in range(self.partitions)], report)
                break
            except CpuLost as lost:
                self._declare_dead(lost.cpu)
                self._drain()
        results = [r for r, _ in list(self.map_done.values()) + list(self.reduce_done.values())]
        counters_mod.merge(report.counters, [r.counters for r in results])
        for stats, done in ((report.map, self.map_done), (report.reduce, self.reduce_done)):
            # from the accepted attempts only: a map run again after its node died counts once
            stats.records_in = sum(r.records_in for r, _ in done.values())
            stats.records_out = sum(r.records_out for r, _ in done.values())
            stats.bytes_in = sum(r.bytes_in for r, _ in done.values())
            stats.bytes_out = sum(r.bytes_out for r, _ in done.values())
        report.shuffled = self._shuffle_bytes()
        if self.job.total_order:   # how even the sampled ranges came out
            report.part_bytes = [sum(res.segments[r].length for res, _ in self.map_done.values())
                                 for r in range(self.partitions)]
        report.slowest = [(t, c, s) for s, t, c in sorted(self.slowest, reverse=True)[:SLOWEST]]
        report.failed_attempts = sum(t.failures + t.fetch_rounds for t in self.tasks.values())
        return parts
