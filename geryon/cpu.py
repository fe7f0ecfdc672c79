"""Cpus: where tasks run. One small protocol; the local implementation is a process pool.

A `Cpu` has a name, a number of slots and `submit(task) -> Future[TaskResult]`. The local
cpu forks worker processes that inherit the job (functions and all), so no job code is
ever serialised; with one slot it runs tasks in the calling process, like mrjob's inline
runner, so a debugger sees the user's code. Remote cpus (node daemons) are elsewhere.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import signal
from typing import Protocol

from geryon.job import Job
from geryon.maptask import run_with_replicas
from geryon.reducetask import run_reduce_task
from geryon.task import MapTask, ReduceTask, TaskResult

log = logging.getLogger(__name__)

_JOBS: dict[str, Job] = {}  # inherited by forked workers


class Cpu(Protocol):
    name: str
    slots: int

    def submit(self, job_id: str, task: MapTask | ReduceTask) -> cf.Future[TaskResult]: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def _ignore_interrupts() -> None:
    """Worker start-up: Ctrl-C is the driver's to handle, not each worker's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_task(job_id: str, task: MapTask | ReduceTask) -> TaskResult:
    """Run one task of a registered job in this process."""
    job = _JOBS[job_id]
    if isinstance(task, MapTask):
        return run_with_replicas(job, task)
    return run_reduce_task(job, task)


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class LocalCpu:
    """This machine's cores as one cpu with `slots` worker processes."""

    def __init__(self, job_id: str, job: Job, slots: int | None = None) -> None:
        self.name = "local"
        self.slots = slots or default_workers()
        self._job_id = job_id
        _JOBS[job_id] = job
        self._pool: cf.Executor = self._new_pool()

    def _new_pool(self) -> cf.Executor:
        if self.slots == 1:
            return _InlineExecutor()
        ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() \
            else multiprocessing.get_context()
        return cf.ProcessPoolExecutor(max_workers=self.slots, mp_context=ctx, initializer=_ignore_interrupts)

    def submit(self, job_id: str, task: MapTask | ReduceTask) -> cf.Future[TaskResult]:
        try:
            return self._pool.submit(run_task, job_id, task)
        except cf.BrokenExecutor:
            # A worker died (killed, out of memory): the pool is unusable; start a new one.
            # Attempts that were running in it have failed and are retried by the driver.
            log.warning("a worker process died; starting new workers")
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(run_task, job_id, task)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        _JOBS.pop(self._job_id, None)

    def abort(self) -> None:
        """Stop at once: kill the workers, whatever they are running (Ctrl-C)."""
        processes = dict(getattr(self._pool, "_processes", None) or {})
        self._pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes.values():
            if proc.is_alive():
                proc.kill()
        for proc in processes.values():
            proc.join(timeout=5)

    def __enter__(self) -> "LocalCpu":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _InlineExecutor(cf.Executor):
    """Runs each submitted call at once, in this process."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut
