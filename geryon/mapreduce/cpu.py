"""Cpus: where task attempts run. One small protocol; the local implementation is a process pool.

The `Cpu` protocol is all the driver (`geryon.mapreduce.engine.Driver`) needs of an executor:

- `name` (str): how records and messages name it; `slots` (int): attempts it runs at once.
- `submit(job_id, task, on_log) -> Future[TaskResult]`: start one attempt of a `MapTask`
  or `ReduceTask` (`geryon.mapreduce.task`; `task.attempt_id` names it). The future's result is the
  attempt's `TaskResult`, failures included (`ok=False` with a `geryon.mapreduce.attempt.FailureKind`);
  an exception from the future means the attempt was lost (the driver classifies it with
  `classify`: `WorkerDied`, `NodeError`, ...). What the task printed is either passed to
  `on_log(bytes)` while it runs (from any thread) or returned in `result.log`. A map's
  `result.output` names its output where the policy's `map_output` can find it; a reduce's
  is its staged part. `submit` must not block for the attempt.
- `close()`: after the job (waits for nothing that matters); `abort()`: stop every running
  attempt at once (Ctrl-C).

Everything else about where it runs (where splits are read from, how parts are committed,
whether a cpu can die) is the driver's `Policy`. The local cpu forks a worker process per
attempt (`forkpool`), which inherits the job (functions and all), so no job code is ever
serialised; with one slot it runs tasks in the calling process, like mrjob's inline
runner, so a debugger sees the user's code. Remote cpus: `geryon.mapreduce.jobnodes.RemoteCpu`.
Not here: the driver, its policies.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import io
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from geryon.mapreduce import memory
from geryon.mapreduce.forkpool import ForkPool
from geryon.mapreduce.job import Job
from geryon.mapreduce.jobparams import task_environment
from geryon.mapreduce.maptask import run_with_replicas
from geryon.mapreduce.reducetask import run_reduce_task
from geryon.mapreduce.task import MapTask, ReduceTask, TaskResult

log = logging.getLogger(__name__)

_JOBS: dict[str, Job] = {}  # inherited by forked workers

LOG_CAP = 1 << 20
"""Bytes of a local attempt's printed output kept for its log."""


OnLog = Callable[[bytes], None]
"""Called with what an attempt printed, as it prints it."""


class Cpu(Protocol):
    """Where attempts run (see the module's docstring for the contract)."""

    name: str
    slots: int

    def submit(self, job_id: str, task: MapTask | ReduceTask, on_log: OnLog | None = None) -> cf.Future[TaskResult]: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def _ignore_interrupts() -> None:
    """Worker start-up: Ctrl-C is the driver's to handle, not each worker's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_task(job_id: str, task: MapTask | ReduceTask, capture: str = "") -> TaskResult:
    """Run one task of a registered job in this process.

    `capture`: "fd" (a worker process: file descriptors 1 and 2) or "python" (inline:
    sys.stdout and sys.stderr) sends what the user's code prints to the result's `log`, so
    that a map's print() never mixes with the job's own output lines; "" leaves them alone.
    """
    job = _JOBS[job_id]
    memory.reset_peak()
    with _captured(capture) as read, task_environment(job):
        if isinstance(task, MapTask):
            result = run_with_replicas(job, task)
        else:
            result = run_reduce_task(job, task)
    result.log = read()
    result.peak_rss = memory.peak_rss()
    return result


@contextlib.contextmanager
def _captured(how: str) -> Iterator[Callable[[], str]]:
    text: list[str] = []
    if not how:
        yield lambda: ""
        return
    with tempfile.TemporaryFile() as f:
        sys.stdout.flush()
        sys.stderr.flush()
        if how == "fd":
            saved = os.dup(1), os.dup(2)
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                yield lambda: "".join(text)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
                text.append(_read_capped(f))
        else:
            sink = io.TextIOWrapper(f, encoding="utf-8", errors="replace", write_through=True)
            try:
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    yield lambda: "".join(text)
            finally:
                sink.flush()
                text.append(_read_capped(f))
                sink.detach()


def _read_capped(f: Any) -> str:
    """What was captured, at most LOG_CAP bytes (head and tail)."""
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    if size <= LOG_CAP:
        return f.read().decode("utf-8", errors="replace")
    head = f.read(LOG_CAP // 4)
    f.seek(size - LOG_CAP // 2)
    tail = f.read()
    return (head.decode("utf-8", errors="replace") + f"\n[geryon: {size - len(head) - len(tail)} bytes dropped]\n"
            + tail.decode("utf-8", errors="replace"))


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
        self._capture = "python" if self.slots == 1 else "fd"
        self._pool: cf.Executor = self._new_pool()

    def _new_pool(self) -> cf.Executor:
        if self.slots == 1:
            return _InlineExecutor()
        # A process per attempt: a worker that dies (killed, out of memory) takes only its
        # own attempt, and says how it died (`forkpool.WorkerDied`); the driver retries it.
        return ForkPool(initializer=_ignore_interrupts)

    def submit(self, job_id: str, task: MapTask | ReduceTask, on_log: OnLog | None = None) -> cf.Future[TaskResult]:
        """Run an attempt in a worker process (or inline); what it prints comes back in `result.log`."""
        return self._pool.submit(run_task, job_id, task, self._capture)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        _JOBS.pop(self._job_id, None)

    def abort(self) -> None:
        """Stop at once: kill the workers, whatever they are running (Ctrl-C)."""
        if isinstance(self._pool, ForkPool):
            self._pool.kill_all()
        else:
            self._pool.shutdown(wait=False, cancel_futures=True)

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
