"""Job history, read: the jobs in a store's directory, their records and what they add up to.

`JobHistory` lists a store's jobs (newest first), reads one job's full record (an id or a
unique prefix) with its events, and finds its attempts' stderr logs; `summarize` and
`phase_counts` turn a record into the line `geryon jobs` shows. The layout on disk
(job.json, summary.json, events.log, logs/) is named here and written by
`geryon.mapreduce.jobstore`.

Decisions:
- A dead driver: `begin` stores the host, pid and time; a record still "running" whose
  driver pid is gone on this host (or was reused by a process started after the job
  began, or is a zombie) reads as "lost". This is computed when reading, never written
  back. On another host the driver cannot be checked and the record reads as recorded.
- A damaged job is skipped when listing (with a warning) and refused when read.

Not here: writing records, pruning or capping logs (`geryon.mapreduce.jobstore`), reading the
environment (the CLI picks the root), display.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
from enum import StrEnum
from typing import Any

from geryon.errors import GeryonError
from geryon.mapreduce.attempt import AttemptId, AttemptState

log = logging.getLogger("geryon.mapreduce.jobstore")  # the store's logger: its warnings keep one name

RECORD_NAME = "job.json"
SUMMARY_NAME = "summary.json"
EVENTS_NAME = "events.log"
LOGS_DIR = "logs"


class JobState(StrEnum):
    """A job record's state: running until the driver finishes it; lost is read, never written."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    KILLED = "killed"
    LOST = "lost"                # still running on record, but its driver is gone


LOG_SUFFIX = "stderr"
"""An attempt's stderr log is `logs/<AttemptId>.stderr`."""
_TASK = re.compile(r"^(?:s(?P<step>\d+)\.)?(?P<kind>\D*)(?P<index>\d+)$")  # a step's tasks: s2.m0
_PHASES = {"m": "map", "r": "reduce"}
_LogPaths = list[tuple[str, int, str]]  # aliases: JobHistory.list shadows the builtin in the class body
_Names = list[str]
_REUSE_SLACK = 5.0  # seconds: /proc's boot time is whole seconds and drifts a little


class JobHistory:
    """A job store's directory, read: one subdirectory per job."""

    def __init__(self, root: str) -> None:
        self.root = root

    def list(self) -> list[dict[str, Any]]:
        """Every job's summary (see `summarize`), newest first; damaged jobs are skipped with a warning."""
        jobs = []
        for job_id in self._job_dirs():
            summary = self._summary(job_id)
            if summary is not None:
                jobs.append(_with_liveness(summary))
        jobs.sort(key=lambda s: (_number(s.get("started")), s["id"]), reverse=True)
        return jobs

    def read(self, job_id: str) -> dict[str, Any]:
        """The full record of a job (an id or a unique prefix), with its `events` read in.

        Raises:
            GeryonError: no job or several jobs match, or the record is damaged.
        """
        found = self.resolve(job_id)
        path = os.path.join(self.root, found, RECORD_NAME)
        try:
            record = _load(path)
        except (OSError, ValueError) as exc:
            raise GeryonError(f"job {found}: damaged record {path}: {exc}") from exc
        record["events"] = _read_events(os.path.join(self.root, found, EVENTS_NAME))
        return _with_liveness(record)

    def resolve(self, job_id: str) -> str:
        """The one job id equal to `job_id` or starting with it.

        Raises:
            GeryonError: no job matches, or the prefix is ambiguous.
        """
        ids = self._job_dirs()
        if job_id in ids:
            return job_id
        matches = sorted(i for i in ids if job_id and i.startswith(job_id))
        if not matches:
            raise GeryonError(f"no job matching {job_id!r}")
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (f", ... ({len(matches)} in all)" if len(matches) > 5 else "")
            raise GeryonError(f"{job_id!r} is ambiguous: {shown}")
        return matches[0]

    def log_paths(self, job_id: str, task: str | None = None) -> _LogPaths:
        """(task, attempt, path) of a job's stderr logs (of one task if given), task order then attempt.

        Raises:
            GeryonError: as `resolve`.
        """
        logs = os.path.join(self.root, self.resolve(job_id), LOGS_DIR)
        try:
            names = os.listdir(logs)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise GeryonError(f"cannot list {logs}: {exc}") from exc
        found = []
        for name in names:
            stem, dot, ext = name.rpartition(".")
            try:
                aid = AttemptId.parse(stem) if dot and ext == LOG_SUFFIX else None
            except ValueError:
                aid = None
            if aid and (task is None or aid.task == task):
                found.append((aid.task, aid.attempt, os.path.join(logs, name)))
        found.sort(key=lambda t: (task_order(t[0]), t[1]))
        return found

    # -- inside the root -------------------------------------------------------------------
    def _job_dirs(self) -> _Names:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise GeryonError(f"cannot list jobs in {self.root}: {exc}") from exc
        return [e.name for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]

    def _summary(self, job_id: str) -> dict[str, Any] | None:
        """summary.json, else a summary of job.json, else None (with a warning)."""
        folder = os.path.join(self.root, job_id)
        try:
            summary = _load(os.path.join(folder, SUMMARY_NAME))
            if summary.get("id") == job_id:
                return summary
        except (OSError, ValueError):
            pass
        try:
            record = _load(os.path.join(folder, RECORD_NAME))
            if record.get("id") != job_id:
                raise ValueError(f"the record names job {record.get('id')!r}")
            return summarize(record)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("skipping %s: no readable job record (%s)", folder, exc)
            return None


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    """The line `geryon jobs` shows of a record: what it is, its state, and task counts.

    Task totals are per phase (map tasks are m<i>, reduce tasks r<i>): the recorded `maps`
    and `partitions` when present, else the tasks seen so far.
    """
    attempts = record.get("attempts") or []
    phases = phase_counts(record)
    return {
        "id": record["id"], "name": record.get("name", ""), "mode": record.get("mode", ""),
        "state": record.get("state", ""), "started": record.get("started"), "ended": record.get("ended"),
        "seconds": record.get("seconds"), "host": record.get("host", ""), "pid": record.get("pid"),
        "begun": record.get("begun"),
        "tasks_done": sum(p["done"] for p in phases.values()),
        "tasks_total": sum(p["total"] for p in phases.values()),
        "attempts": len(attempts),
        "failed_attempts": sum(1 for a in attempts if a.get("state") in (AttemptState.FAILED, AttemptState.LOST)),
        "phases": phases,
    }


def phase_counts(record: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per phase: tasks total, done, running and failed (no attempt done, the last one failed or lost)."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for a in record.get("attempts") or []:
        by_task.setdefault(a["task"], []).append(a)
    declared = {"map": record.get("maps"), "reduce": record.get("partitions")}
    phases: dict[str, dict[str, int]] = {}
    for task in sorted(by_task, key=task_order):
        tries = sorted(by_task[task], key=lambda a: a["attempt"])
        counts = phases.setdefault(phase_of(task), {"total": 0, "done": 0, "running": 0, "failed": 0})
        counts["total"] += 1
        if any(a.get("state") == AttemptState.DONE for a in tries):
            counts["done"] += 1
        elif any(a.get("state") == AttemptState.RUNNING for a in tries):
            counts["running"] += 1
        elif tries[-1].get("state") in (AttemptState.FAILED, AttemptState.LOST, AttemptState.KILLED):
            counts["failed"] += 1
    for phase, n in declared.items():
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            counts = phases.setdefault(phase, {"total": 0, "done": 0, "running": 0, "failed": 0})
            counts["total"] = max(counts["total"], n)
    return phases


def phase_of(task: str) -> str:
    """"map" for m<i>, "reduce" for r<i>, else the task's letters (or the task itself); a step's
    tasks (`s2.m0`, multi-step jobs) are in "step 2 map"."""
    m = _TASK.match(task)
    kind = m["kind"] if m else task
    phase = _PHASES.get(kind, kind or task)
    return f"step {int(m['step'])} {phase}" if m and m["step"] else phase


def task_order(task: str) -> tuple[int, str, int, str]:
    """Sort key: by step (multi-step jobs), maps before reduces, then by index (m2 before m10)."""
    m = _TASK.match(task)
    return (int(m["step"] or 0), m["kind"], int(m["index"]), "") if m else (0, task, -1, task)


def driver_alive(host: str, pid: Any, begun: Any) -> bool | None:
    """Whether the process that began a job still runs: None when it cannot be told (another host)."""
    if host != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return None
    started, zombie = _process_start(pid)
    if zombie:
        return False
    if started is not None and isinstance(begun, (int, float)) and started > begun + _REUSE_SLACK:
        return False  # the pid now belongs to a process born after the job began
    return True


def _process_start(pid: int) -> tuple[float | None, bool]:
    """(start time, is a zombie) of a process, from Linux's /proc; (None, False) elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK"), fields[0] == b"Z"
    except (OSError, ValueError, IndexError, StopIteration):
        return None, False


def _with_liveness(record: dict[str, Any]) -> dict[str, Any]:
    """A running record whose driver is gone reads as "lost"."""
    if record.get("state") == JobState.RUNNING and driver_alive(record.get("host", ""), record.get("pid"),
                                                         record.get("begun")) is False:
        return dict(record, state=JobState.LOST.value)
    return record


def _read_events(path: str) -> list[dict[str, str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return []
    events: list[dict[str, str]] = []
    for line in lines:
        if line.startswith("\t") and events:
            events[-1]["text"] += "\n" + line[1:]
        elif line:
            when, _, text = line.partition(" ")
            events.append({"time": when, "text": text})
    return events


def _number(value: Any, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default



def _load(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        value = json.loads(f.read())
    if not isinstance(value, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return value

