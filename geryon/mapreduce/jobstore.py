"""Job history on disk: what every job ran, where, how each attempt went, and its stderr.

The driver opens a `JobRecord` with `JobStore.begin` and reports attempts, stderr and
events to it while the job runs (Hadoop's job history; `mapred job -list`, `yarn logs`).
Each job is one directory under the store's root:

    <root>/<job_id>/job.json       the full record, rewritten atomically (temp file + os.replace)
    <root>/<job_id>/summary.json   the line `geryon jobs` shows, written with job.json
    <root>/<job_id>/events.log     timestamped job-level lines, appended
    <root>/<job_id>/logs/<task>.a<attempt>.stderr   each attempt's stderr, appended

Decisions:
- Throttling: recording an attempt only marks the record dirty; a writer thread rewrites
  job.json at most every `flush_every` seconds (0.5 s), so thousands of tasks cost a few
  rewrites a second, and a quiet record still reaches the disk within `flush_every`.
  `finish` and `close` write at once. No fsync: a crash loses at most the last interval.
- Pruning: `begin` keeps the newest `keep` (100) jobs by start time and removes older
  job directories, except running jobs whose driver is alive. Only directories holding a
  job.json or summary.json are ever removed, so a mistaken root loses nothing else.
- Stderr cap: each attempt's log holds at most `log_cap` (1 MiB) bytes: past it, the log
  is rewritten as its head, a note and its tail (`geryon.mapreduce.stderrcap`).
- `close()` without `finish()` ends the job as "failed" (the driver stopped without a
  result); attempts still running when a job finishes are marked "killed".
- Writes after `begin` never raise (history must not fail a job): an OSError warns once
  and then logs at debug.

Not here: listing and reading jobs, summaries and telling a dead driver (`geryon.mapreduce.jobhistory`,
whose `JobHistory` a `JobStore` extends), reading the environment (the CLI picks the root),
display, and deciding task states (the driver reports them).
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from geryon.mapreduce.attempt import AttemptId, AttemptState
from geryon.errors import GeryonError
from geryon.mapreduce.jobhistory import (EVENTS_NAME, LOGS_DIR, RECORD_NAME, SUMMARY_NAME, JobHistory, JobState, _load, _number,
                               _with_liveness, driver_alive, phase_counts, phase_of, summarize, task_order)
from geryon.defaults import DEFAULT_KEEP
from geryon.mapreduce.stderrcap import LogState, cut_log

__all__ = [
    "ATTEMPT_STATES", "DEFAULT_FLUSH_EVERY", "DEFAULT_KEEP", "DEFAULT_LOG_CAP", "JOB_STATES", "RECORD_VERSION",
    "JobRecord", "JobStore",
    # re-exported from geryon.mapreduce.jobhistory
    "EVENTS_NAME", "LOGS_DIR", "RECORD_NAME", "SUMMARY_NAME", "JobHistory", "JobState", "driver_alive", "phase_counts",
    "phase_of", "summarize", "task_order",
]

log = logging.getLogger(__name__)

DEFAULT_FLUSH_EVERY = 0.5
"""Seconds between rewrites of a running job's job.json."""

DEFAULT_LOG_CAP = 1 << 20
"""Bytes kept of one attempt's stderr (head and tail around a note of what was dropped)."""

RECORD_VERSION = 1
"""The format version of job.json."""

JOB_STATES = (JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.KILLED.value)
"""States `JobRecord.finish` accepts; a record is "running" before and may read as "lost"."""

ATTEMPT_STATES = tuple(s.value for s in AttemptState if s not in (AttemptState.RUNNING, AttemptState.KILLED))
"""States `JobRecord.attempt_ended` accepts ("killed" is set by `finish` for abandoned attempts)."""

_OWNED = ("id", "version", "state", "host", "pid", "begun", "ended", "seconds", "attempts", "summary", "updated")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$")


class JobStore(JobHistory):
    """A directory holding one subdirectory per job, written (reading is `JobHistory`'s)."""

    def __init__(self, root: str, *, keep: int = DEFAULT_KEEP, flush_every: float = DEFAULT_FLUSH_EVERY,
                 log_cap: int = DEFAULT_LOG_CAP, clock: Callable[[], float] = time.time) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        if log_cap < 1024:
            raise ValueError(f"log_cap must be at least 1024 bytes, not {log_cap}")
        super().__init__(root)
        self.keep = keep
        self.flush_every = flush_every
        self.log_cap = log_cap
        self._clock = clock

    def begin(self, job_id: str, info: dict[str, Any]) -> JobRecord:
        """Record a job as running and return the record the driver reports to.

        `info` holds what the job is (name, mode, argv, map, reduce, disks, partitions, cpus,
        started, and `maps` when known); keys the store owns (id, state, attempts, ...) are
        ignored. Older jobs past `keep` are pruned first.

        Raises:
            GeryonError: a bad or existing job id, or the directory cannot be written.
        """
        if not _SAFE_NAME.match(job_id):
            raise GeryonError(f"bad job id {job_id!r}: use letters, digits, '.', '_', '+' or '-'")
        final = os.path.join(self.root, job_id)
        now = self._clock()
        record: dict[str, Any] = {k: v for k, v in info.items() if k not in _OWNED}
        record.setdefault("started", now)
        # begun is real wall time whatever the clock: it is compared with the driver's process start
        record.update(id=job_id, version=RECORD_VERSION, state=JobState.RUNNING.value, host=socket.gethostname(),
                      pid=os.getpid(), begun=time.time(), ended=None, seconds=None, summary={}, attempts=[])
        try:
            os.makedirs(self.root, exist_ok=True)
            self._prune(self.keep - 1)
            if os.path.lexists(final):
                raise GeryonError(f"job {job_id!r} already exists in {self.root}")
            # Built under a hidden name and renamed, so a reader never sees a job without job.json.
            tmp = tempfile.mkdtemp(prefix=f".tmp-{job_id}-", dir=self.root)
            try:
                _write_atomic(os.path.join(tmp, RECORD_NAME), _dumps(record))
                _write_atomic(os.path.join(tmp, SUMMARY_NAME), _dumps(summarize(record)))
                os.rename(tmp, final)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        except OSError as exc:
            raise GeryonError(f"cannot record job {job_id} in {self.root}: {exc}") from exc
        return JobRecord(job_id, final, record, flush_every=self.flush_every, log_cap=self.log_cap,
                         clock=self._clock)

    # -- inside the root -------------------------------------------------------------------
    def _prune(self, keep: int) -> None:
        """Remove job directories past the newest `keep`, and stale half-made ones (never raises)."""
        ranked = []
        try:
            entries = list(os.scandir(self.root))
        except OSError as exc:
            log.warning("cannot prune jobs in %s: %s", self.root, exc)
            return
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if entry.name.startswith(".tmp-"):
                    if self._clock() - entry.stat().st_mtime > 3600:  # a begin() that died half-way
                        shutil.rmtree(entry.path, ignore_errors=True)
                    continue
                if entry.name.startswith(".") or not _is_job_dir(entry.path):
                    continue  # not ours: never removed
                try:
                    summary = _load(os.path.join(entry.path, SUMMARY_NAME))
                    started = _number(summary.get("started"))
                except (OSError, ValueError):
                    summary, started = {}, entry.stat().st_mtime
            except OSError:
                continue  # removed under us by another pruning driver
            ranked.append((started, entry.name, summary))
        ranked.sort(key=lambda r: (r[0], r[1]), reverse=True)
        for _, name, summary in ranked[keep:]:
            if _with_liveness(summary).get("state") == JobState.RUNNING and summary.get("host") == socket.gethostname():
                continue  # its driver is still writing to it
            log.debug("pruning job %s", name)
            shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)


class JobRecord:
    """One running job's record; every method may be called from any thread."""

    def __init__(self, job_id: str, dir: str, record: dict[str, Any], *, flush_every: float = DEFAULT_FLUSH_EVERY,
                 log_cap: int = DEFAULT_LOG_CAP, clock: Callable[[], float] = time.time) -> None:
        self.job_id = job_id
        self.dir = dir
        self._record = record
        self._attempts: dict[tuple[str, int], dict[str, Any]] = {}
        self._flush_every = flush_every
        self._log_cap = log_cap
        self._clock = clock
        self._cond = threading.Condition()  # guards the record, _dirty and _closed
        self._write_lock = threading.Lock()  # orders whole writes; taken before _cond, never after
        self._log_lock = threading.Lock()
        self._logs: dict[tuple[str, int], LogState] = {}
        self._dirty = False
        self._closed = False
        self._closing = False
        self._finished = False
        self._last_write = time.monotonic()
        self._warned = False
        self._writer = threading.Thread(target=self._write_when_due, name=f"geryon-jobstore-{job_id}", daemon=True)
        self._writer.start()

    def __enter__(self) -> JobRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def attempt_started(self, task: str, attempt: int, cpu: str, input: str = "") -> None:
        """An attempt of `task` began on `cpu` (reading `input`)."""
        _check_task(task)
        entry = {"task": task, "attempt": attempt, "cpu": cpu, "input": input, "state": AttemptState.RUNNING.value,
                 "started": self._clock(), "ended": None, "seconds": None, "records_in": 0, "records_out": 0,
                 "bytes_in": 0, "bytes_out": 0, "error": "", "output": ""}
        with self._cond:
            self._attempts[(task, attempt)] = entry
            self._changed()

    def attempt_ended(self, task: str, attempt: int, state: str, *, error: str = "", records_in: int = 0,
                      records_out: int = 0, bytes_in: int = 0, bytes_out: int = 0, output: str = "",
                      peak_rss: int = 0) -> None:
        """An attempt ended: "done", "failed", "lost" (its cpu went away) or "ignored" (a late duplicate)."""
        if state not in ATTEMPT_STATES:
            raise ValueError(f"bad attempt state {state!r}: expected one of {', '.join(ATTEMPT_STATES)}")
        now = self._clock()
        with self._cond:
            entry = self._attempts.get((task, attempt))
            if entry is None:  # never reported as started: keep what we know
                _check_task(task)
                entry = self._attempts[(task, attempt)] = {"task": task, "attempt": attempt, "cpu": "", "input": "",
                                                           "started": None}
            started = entry.get("started")
            entry.update(state=state, ended=now, seconds=None if started is None else max(0.0, now - started),
                         error=error, records_in=records_in, records_out=records_out, bytes_in=bytes_in,
                         bytes_out=bytes_out, output=output)
            if peak_rss:
                entry["peak_rss"] = peak_rss
            self._changed()

    def stderr(self, task: str, attempt: int, data: bytes) -> None:
        """Append `data` to the attempt's stderr log (kept within the cap: head, a note, tail)."""
        _check_task(task)
        if not data:
            return
        path = os.path.join(self.dir, LOGS_DIR, f"{AttemptId(task, attempt)}.stderr")
        with self._log_lock:
            state = self._logs.setdefault((task, attempt), LogState())
            try:
                if state.size == 0:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                if state.size + len(data) <= self._log_cap:
                    with open(path, "ab") as f:
                        f.write(data)
                    state.size += len(data)
                else:
                    _cut_log(path, state, data, self._log_cap)
            except OSError as exc:
                self._warn(f"cannot write {path}: {exc}")

    def event(self, text: str) -> None:
        """Append a timestamped job-level line to events.log (continuation lines indented)."""
        line = f"{_local_iso(self._clock())} {text.rstrip()}".replace("\n", "\n\t") + "\n"
        with self._log_lock:
            try:
                with open(os.path.join(self.dir, EVENTS_NAME), "a", encoding="utf-8") as f:
                    f.write(line)
            except OSError as exc:
                self._warn(f"cannot write events of job {self.job_id}: {exc}")

    def update_info(self, info: dict[str, Any]) -> None:
        """Add to what `begin` recorded (e.g. `maps`, once the input is planned)."""
        with self._cond:
            self._record.update({k: v for k, v in info.items() if k not in _OWNED})
            self._changed()

    def flush(self) -> None:
        """Write what changed now, not when the writer is next due (what a killed driver must leave)."""
        self._flush()

    def finish(self, state: str, summary: dict[str, Any]) -> None:
        """The job ended: "succeeded", "failed" or "killed"; `summary` holds counters, parts, seconds, error."""
        if state not in JOB_STATES:
            raise ValueError(f"bad job state {state!r}: expected one of {', '.join(JOB_STATES)}")
        now = self._clock()
        with self._cond:
            self._finished = True
            started = _number(self._record.get("started"), now)
            self._record.update(state=str(state), ended=now, seconds=max(0.0, now - started), summary=dict(summary))
            for entry in self._attempts.values():
                if entry["state"] == AttemptState.RUNNING:
                    entry.update(state=AttemptState.KILLED.value, ended=now, seconds=max(0.0, now - _number(entry["started"], now)))
            self._changed()
        self._flush()

    def close(self) -> None:
        """Write the record a last time and stop the writer; finishes as "failed" if `finish` was not called."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            finished = self._finished
        if not finished:
            self.finish(JobState.FAILED, {"error": "the driver stopped without finishing the job"})
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._writer.join()
        self._flush()

    def discard(self) -> None:
        """Close and remove the record: the job never started (a mistyped disk is not a failed job)."""
        with self._cond:
            self._finished = True
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- writing ---------------------------------------------------------------------------
    def _changed(self) -> None:
        """Mark the record dirty (holding _cond) and wake the writer if it was idle."""
        if not self._dirty:
            self._dirty = True
            self._cond.notify_all()

    def _write_when_due(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._dirty:
                        delay = self._last_write + self._flush_every - time.monotonic()
                        if delay <= 0:
                            break
                        self._cond.wait(delay)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
            self._flush()

    def _flush(self) -> None:
        with self._write_lock:
            with self._cond:
                if not self._dirty:
                    return
                self._dirty = False
                self._last_write = time.monotonic()
                record = dict(self._record, updated=self._clock())
                # copies, so the JSON is built outside the lock while attempts go on changing
                record["attempts"] = [dict(self._attempts[k]) for k in sorted(self._attempts, key=_attempt_order)]
            try:
                _write_atomic(os.path.join(self.dir, RECORD_NAME), _dumps(record))
                _write_atomic(os.path.join(self.dir, SUMMARY_NAME), _dumps(summarize(record)))
            except OSError as exc:
                self._warn(f"cannot write the record of job {self.job_id}: {exc}")

    def _warn(self, message: str) -> None:
        # a full or vanished disk would repeat this on every write: warn once, then debug
        if self._warned:
            log.debug("%s", message)
        else:
            self._warned = True
            log.warning("%s (job history is incomplete)", message)


def _cut_log(path: str, state: LogState, data: bytes, cap: int) -> None:
    """Rewrite a log that `data` would take past `cap` as head + note + tail (`geryon.mapreduce.stderrcap`)."""
    try:
        with open(path, "rb") as f:
            old = f.read()
    except FileNotFoundError:
        old = b""
    body, head, marker, state.dropped = cut_log(old, state, data, cap)
    _write_atomic(path, body)
    state.size, state.head, state.marker = len(body), head, marker


# -- small pieces --------------------------------------------------------------------------
def _is_job_dir(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, n)) for n in (RECORD_NAME, SUMMARY_NAME))


def _check_task(task: str) -> None:
    if not _SAFE_NAME.match(task):
        raise ValueError(f"bad task name {task!r}: it names a log file")


def _attempt_order(key: tuple[str, int]) -> tuple[tuple[str, int, str], int]:
    return task_order(key[0]), key[1]


def _local_iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, indent=1, default=str).encode("utf-8")


def _write_atomic(path: str, data: bytes) -> None:
    """Write a file under a temporary name and rename it into place (readers see old or new)."""
    folder, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
