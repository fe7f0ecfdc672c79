"""What the one driver (`geryon.mapreduce.engine.Driver`) does when an attempt ends: accept the first
success of each task, try a failure again when another attempt may cure it (or fail the job with
its message), send back to the queue a task whose inputs died, and bury a dead cpu with the
outputs it held (fencing: nothing a cpu declared dead says is used).

`AttemptOutcomes` is the part of the driver that does this (the driver's tables: `tasks`,
`pending`, `map_done`, `reduce_done`, `running`, `dead`, `excluded`); `failure_message` is a failed
job's message. Not here: dispatching attempts, the commit (`geryon.mapreduce.engine`), what may be
retried where (`geryon.mapreduce.policy`).
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from geryon.errors import JobFailed
from geryon.mapreduce import memory
from geryon.mapreduce.attempt import (AttemptId, AttemptState, FailureKind, classify, is_map_task, task_index,
                                      task_name)
from geryon.mapreduce.cpu import Cpu
from geryon.mapreduce.task import MapTask, TaskResult

log = logging.getLogger(__name__)

EXTRA_FETCH_ROUNDS = 8
"""Attempts a task may spend beyond `max_attempts` on inputs lost with their node or silent."""

UNREACHABLE_PAUSE = 1.0
"""Seconds before a map whose input no node served is tried again."""


@dataclass
class _Task:
    id: str                    # m3, r0
    attempts: int = 0          # attempt ids handed out so far
    failures: int = 0          # failed attempts that count toward max_attempts
    fetch_rounds: int = 0      # attempts spent on inputs lost with their node, or silent
    tried: set[Cpu] = field(default_factory=set)
    not_before: float = 0.0    # monotonic time before which it is not dispatched again
    queued: float = 0.0        # monotonic time it (last) became dispatchable

    @property
    def is_map(self) -> bool:
        return is_map_task(self.id)

    @property
    def index(self) -> int:
        return task_index(self.id)


@dataclass
class _Running:
    task: _Task
    aid: AttemptId
    cpu: Cpu
    started: float


class AttemptOutcomes:
    """The driver's handling of ended attempts (a base of `geryon.mapreduce.engine.Driver`)."""

    job: Any
    cpus: list[Cpu]
    maps: list[MapTask]
    policy: Any
    progress: Any
    record: Any
    max_attempts: int
    tasks: dict[str, _Task]
    pending: list[str]
    map_done: dict[int, tuple[TaskResult, Cpu]]
    reduce_done: dict[int, tuple[TaskResult, Cpu]]
    running: dict[cf.Future[TaskResult], _Running]
    dead: set[Cpu]
    excluded: set[Cpu]
    cpu_failures: dict[Cpu, int]
    busy: dict[Cpu, int]
    slowest: list[tuple[float, str, str]]
    _last_failure: str

    def _counts(self) -> None:
        raise NotImplementedError

    def _event(self, text: str) -> None:
        raise NotImplementedError

    def _log(self, aid: AttemptId, data: bytes) -> None:
        raise NotImplementedError

    def _result_of(self, fut: cf.Future[TaskResult], run: _Running) -> TaskResult:
        try:
            result = fut.result()
        except Exception as exc:  # the worker died, its node did, or the attempt could not be sent
            kind = classify(exc, otherwise=FailureKind.SYSTEM)
            error = (memory.killed_message(run.task.id, self.job.sort_budget, memory.memory_limit())
                     if kind == FailureKind.MEMORY else f"{run.aid} on {run.cpu.name} lost: {exc}")
            return TaskResult(task=run.task.id, attempt=run.aid.attempt, ok=False, error_kind=kind, error=error)
        if result.log:   # printed output a cpu returns rather than streams
            self._log(run.aid, result.log.encode("utf-8", errors="replace"))
        return result

    def _completed(self, fut: cf.Future[TaskResult], run: _Running) -> None:
        task, cpu = run.task, run.cpu
        self.busy[cpu] -= 1
        self._counts()   # this attempt no longer runs: the line its end prints says so
        result = self._result_of(fut, run)
        seconds = time.monotonic() - run.started
        self.policy.attempt_ended(self.maps[task.index] if task.is_map else None, result)
        if cpu in self.dead:
            # Fencing: whatever a cpu declared dead says, nothing of it is used.
            self._ended(run, AttemptState.IGNORED, result, f"late result from {cpu.name}, declared dead")
            self._requeue_if_needed(task)
            return
        if result.ok:
            self._succeeded(run, result, seconds)
        else:
            self._failed(run, result)
        self._counts()

    def _ended(self, run: _Running, state: AttemptState, result: TaskResult, error: str = "") -> None:
        if self.record is not None:
            self.record.attempt_ended(run.task.id, run.aid.attempt, state.value, error=error or result.error,
                                      records_in=result.records_in, records_out=result.records_out,
                                      bytes_in=result.bytes_in, bytes_out=result.bytes_out, output=result.output,
                                      peak_rss=result.peak_rss)

    def _done(self, task: _Task) -> bool:
        return task.index in (self.map_done if task.is_map else self.reduce_done)

    def _queue(self, task: _Task) -> None:
        task.queued = time.monotonic()
        self.pending.append(task.id)

    def _requeue_if_needed(self, task: _Task) -> None:
        if not self._done(task) and task.id not in self.pending and \
                not any(r.task is task for r in self.running.values()):
            self._queue(task)

    def _succeeded(self, run: _Running, result: TaskResult, seconds: float) -> None:
        task = run.task
        done = self.map_done if task.is_map else self.reduce_done
        if task.index in done:
            self._ended(run, AttemptState.IGNORED, result, "another attempt already committed")
            return
        done[task.index] = (result, run.cpu)
        self._ended(run, AttemptState.DONE, result)
        self.slowest.append((seconds, str(run.aid), run.cpu.name))
        self.progress.task_done(result)

    def _failed(self, run: _Running, result: TaskResult) -> None:
        task, cpu, policy = run.task, run.cpu, self.policy
        kind = result.error_kind
        message = failure_message(result, run.aid, cpu.name if policy.names_cpus else None)
        self._ended(run, AttemptState.LOST if kind == FailureKind.LOST else AttemptState.FAILED, result)
        if kind in policy.requeue_kinds:
            if kind == FailureKind.FETCH:
                self._lost_input(result.lost_input)
            else:   # no copy of the input answered: try again in a moment
                task.not_before = time.monotonic() + UNREACHABLE_PAUSE
            task.fetch_rounds += 1
            if task.fetch_rounds > EXTRA_FETCH_ROUNDS + self.max_attempts:
                raise JobFailed(message + " (its inputs kept disappearing)")
            self._event(f"{run.aid} on {cpu.name}: {result.error}; running it again")
            self._queue(task)
            return
        if task.is_map and kind == FailureKind.INPUT:
            maps = policy.more_copies(self.maps, task.index)
            if maps is not None:
                self.maps = maps
                task.fetch_rounds += 1
                self._event(f"{run.aid} on {cpu.name}: {result.error}; the registry names another copy: "
                            "running it again")
                self._queue(task)
                return
        if kind not in policy.retry_kinds:
            raise JobFailed(message)
        task.failures += 1
        self._last_failure = message
        self.cpu_failures[cpu] = self.cpu_failures.get(cpu, 0) + 1
        limit = policy.max_cpu_failures
        if kind in (FailureKind.LOST, FailureKind.SYSTEM) and not policy.alive(cpu):
            self._declare_dead(cpu)
        elif limit is not None and self.cpu_failures[cpu] >= limit and cpu not in self.excluded:
            self.excluded.add(cpu)
            self._event(f"{cpu.name} excluded from the job after {limit} failed attempts")
            self.progress.message(f"excluding {cpu.name}: {limit} failed attempts")
        if task.failures >= self.max_attempts:
            raise JobFailed(failure_message(result, run.aid, cpu.name if policy.names_cpus else None,
                                            task.failures))
        why = "was killed for memory" if kind == FailureKind.MEMORY else f"failed: {result.error}"
        self._event(f"{run.aid} on {cpu.name} failed ({kind}): {result.error}; retrying")
        self.progress.message(f"retrying {task.id}: {why}")
        self._queue(task)

    def _lost_input(self, location: str) -> None:
        """A reducer could not read `location`: run its map again (and bury its cpu if dead)."""
        owner = self.policy.owner(location, self.cpus)
        if owner is None:
            return
        if owner not in self.dead and not self.policy.alive(owner):
            self._declare_dead(owner)
            return
        for i, (res, cpu) in list(self.map_done.items()):
            if cpu is owner and location.endswith("/" + res.output):
                del self.map_done[i]
                self._event(f"map output {location} unreadable: running {task_name('map', i)} again")
                self._requeue_if_needed(self.tasks[task_name("map", i)])

    def _declare_dead(self, cpu: Cpu) -> None:
        """`cpu` is gone: its attempts are lost, and so is every output it held."""
        self.dead.add(cpu)
        lost_maps = [i for i, (_, c) in self.map_done.items() if c is cpu]
        lost_reduces = [r for r, (_, c) in self.reduce_done.items() if c is cpu]
        for i in lost_maps:
            del self.map_done[i]
            self._requeue_if_needed(self.tasks[task_name("map", i)])
        for r in lost_reduces:
            del self.reduce_done[r]
            self._requeue_if_needed(self.tasks[task_name("reduce", r)])
        self._event(f"{cpu.name} declared dead: {len(lost_maps)} map output(s) and "
                    f"{len(lost_reduces)} staged part(s) lost, their tasks run again")
        self.progress.message(f"{cpu.name} is dead: running {len(lost_maps)} map(s) and "
                              f"{len(lost_reduces)} reduce(s) again")


def failure_message(result: TaskResult, aid: AttemptId, cpu: str | None = None, attempts: int = 1) -> str:
    """A failed job's message: the attempt's error, where it ran (`cpu`, if named), how many
    attempts the task had, then its detail (a traceback's or stderr's tail)."""
    msg = result.error or f"{aid} failed"
    if cpu is not None:
        msg += f" [attempt {aid} on cpu {cpu}]"
    if attempts > 1:
        msg += f" (after {attempts} attempts)"
    if result.detail:
        msg += "\n" + result.detail
    return msg
