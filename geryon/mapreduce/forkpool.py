"""Local worker processes: each task attempt runs in a process of its own, forked for it.

A fresh process per attempt (rather than a pool of long-lived workers) means that a worker
that dies takes only its own attempt with it, and the driver learns how it died: its exit
status, and whether the kernel killed it for memory (`memory.oom_kills` rose while it ran,
and it died of SIGKILL). It also gives every attempt the memory it frees back: a task's
peak is its own, never the sum of the fragmentation of the tasks before it. The job's
functions are inherited by fork, never serialised; the result comes back over a pipe.

Not here: what a task does (`cpu.run_task`), retries (`engine`).
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable
from typing import Any

from geryon.mapreduce import memory
from geryon.mapreduce.attempt import FailureKind
from geryon.errors import GeryonError

log = logging.getLogger(__name__)


class WorkerDied(GeryonError):
    """A worker process ended without a result: killed by a signal, or exited."""

    def __init__(self, exitcode: int | None, for_memory: bool) -> None:
        self.exitcode = exitcode
        self.for_memory = for_memory
        self.failure_kind = FailureKind.MEMORY if for_memory else FailureKind.SYSTEM
        how = (f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0
               else f"exit status {exitcode}")
        super().__init__(f"worker process {how}" + (" (the kernel's out-of-memory killer)" if for_memory else ""))


def _child(conn: Any, initializer: Callable[[], None] | None, fn: Callable, args: tuple,
           mask: Any = frozenset()) -> None:
    memory.volunteer_for_oom()  # the kernel should take this process, not the driver
    if initializer is not None:
        initializer()
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)   # forked with SIGINT blocked (`submit`)
    try:
        out: tuple = ("ok", fn(*args))
    except Exception as exc:  # the driver re-raises it
        out = ("raise", exc)
    except BaseException as exc:  # SystemExit, KeyboardInterrupt: never the driver's to raise
        out = ("raise", RuntimeError(f"{type(exc).__name__}: {exc}"))
    try:
        conn.send(out)
    except Exception as exc:  # e.g. an exception that cannot be pickled
        conn.send(("raise", RuntimeError(f"{type(out[1]).__name__}: {out[1]}")))
        del exc
    conn.close()


class ForkPool(cf.Executor):
    """An executor that forks one process per submitted call (the driver keeps to `slots`)."""

    def __init__(self, initializer: Callable[[], None] | None = None) -> None:
        self._ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() \
            else multiprocessing.get_context()
        self._initializer = initializer
        self._lock = threading.Lock()
        self._procs: dict[int, Any] = {}
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        if kwargs:
            raise TypeError("ForkPool.submit takes positional arguments only")
        fut: cf.Future = cf.Future()
        fut.set_running_or_notify_cancel()  # started at once: it can no longer be cancelled
        # Ctrl-C waits until the worker is known (and watched): one forked but not yet recorded
        # would escape `kill_all` and keep the interrupted driver waiting for it at exit.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            with self._lock:
                if self._closed:
                    raise RuntimeError("ForkPool is shut down")
                recv, send = self._ctx.Pipe(duplex=False)
                before = memory.oom_kills()
                proc = self._ctx.Process(target=_child, args=(send, self._initializer, fn, args, mask))
                proc.start()
                send.close()
                self._procs[id(fut)] = proc
                t = threading.Thread(target=self._wait, args=(fut, proc, recv, before), daemon=True,
                                     name=f"geryon-fork-{proc.pid}")
                self._threads = [x for x in self._threads if x.is_alive()]
                self._threads.append(t)
                t.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return fut

    def _wait(self, fut: cf.Future, proc: Any, recv: Any, oom_before: int) -> None:
        try:
            out = recv.recv()
        except (EOFError, OSError):
            out = None
        finally:
            recv.close()
        proc.join()
        with self._lock:
            self._procs.pop(id(fut), None)
        if out is None:
            died = proc.exitcode == -signal.SIGKILL and memory.oom_kills() > oom_before
            fut.set_exception(WorkerDied(proc.exitcode, died))
        elif out[0] == "ok":
            fut.set_result(out[1])
        else:
            fut.set_exception(out[1])

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        if wait:
            for t in threads:
                t.join()

    def kill_all(self) -> None:
        """Kill every running worker (Ctrl-C) and wait for them."""
        with self._lock:
            self._closed = True
            procs = list(self._procs.values())
            threads = list(self._threads)
        for p in procs:
            if p.is_alive():
                p.kill()
        for t in threads:
            t.join(timeout=5)
