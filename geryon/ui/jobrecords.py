"""The job records as the dashboard's pages read them: rows, running tasks, stamps.

`JobRecords` reads a `JobHistory` for the pages: the jobs page's rows (each job's input
bytes and output read from its job.json once per change of it), the attempts running per
cpu (at most once a second), one job's record with the stderr tails of its failed
attempts, and the stamps a live page compares to know that what it shows changed.

Not here: the HTTP routes and live streams (`geryon.ui.server`), the HTML (`geryon.ui.pages`),
what a record says (`geryon.ui.jobview`), writing records (`geryon.mapreduce.jobstore`).
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from geryon.mapreduce.jobhistory import EVENTS_NAME, RECORD_NAME, SUMMARY_NAME, JobHistory, JobState
from geryon.ui import jobview, pages

log = logging.getLogger(__name__)

DEFAULT_JOBS_SHOWN = 100
"""Jobs on the jobs page (the store keeps 100 by default)."""


class JobRecords:
    """The records of `history`, read for the dashboard (with a cache per job record)."""

    def __init__(self, history: JobHistory) -> None:
        self.history = history
        self._rows: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}   # job id -> (stamp, derived)
        self._tasks_read: tuple[float, dict[str, int]] | None = None

    def rows(self) -> list[dict[str, Any]]:
        """The jobs page's rows, newest first: each summary with input bytes, output and duration."""
        now = time.time()
        rows = []
        summaries = self.history.list()[:DEFAULT_JOBS_SHOWN]
        for s in summaries:
            derived = self._derived(s["id"])
            row = dict(s, **derived)
            row["duration"] = jobview.duration(s, now)
            rows.append(row)
        live = {s["id"] for s in summaries}
        for gone in [j for j in self._rows if j not in live]:
            del self._rows[gone]
        return rows

    def _derived(self, job_id: str) -> dict[str, Any]:
        """Input bytes and output of a job, read from its job.json once per change of it."""
        path = os.path.join(self.history.root, job_id, RECORD_NAME)
        try:
            st = os.stat(path)
        except OSError:
            return {"input_bytes": 0, "output": "", "running_on": {}}
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._rows.get(job_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            with open(path, "rb") as f:
                record = json.loads(f.read())
            derived = {"input_bytes": jobview.input_bytes(record), "output": jobview.output_of(record),
                       "running_on": jobview.running_on(record)}
        except (OSError, ValueError, TypeError, AttributeError):
            derived = {"input_bytes": 0, "output": "", "running_on": {}}
        self._rows[job_id] = (stamp, derived)
        return derived

    def running_tasks(self) -> dict[str, int]:
        """Job attempts running now per cpu (node), over the running jobs; read at most once a second."""
        now = time.monotonic()
        if self._tasks_read is not None and now - self._tasks_read[0] < 1.0:
            return self._tasks_read[1]
        counts: dict[str, int] = {}
        for row in self.rows():
            if row.get("state") == JobState.RUNNING:
                for cpu, n in (row.get("running_on") or {}).items():
                    counts[cpu] = counts.get(cpu, 0) + n
        self._tasks_read = (now, counts)
        return counts

    def record(self, job_id: str) -> tuple[dict[str, Any], dict[tuple[str, int], str]]:
        """A job's record, and the stderr tails of its failed attempts by (task, attempt)."""
        record = self.history.read(job_id)
        tails: dict[tuple[str, int], str] = {}
        failed = {(str(a["task"]), int(a.get("attempt") or 0)) for a in jobview.failures(record)}
        if failed:
            for task, attempt, path in self.history.log_paths(record["id"]):
                if (task, attempt) in failed:
                    tails[(task, attempt)] = read_tail(path, pages.STDERR_TAIL).decode("utf-8", "replace")
        return record, tails

    def job_stamp(self, job_id: str) -> tuple[Any, ...]:
        """What changes when a job's page must: its record's and events' sizes and times."""
        folder = os.path.join(self.history.root, self.history.resolve(job_id))
        out: list[Any] = []
        for name in (RECORD_NAME, EVENTS_NAME):
            try:
                st = os.stat(os.path.join(folder, name))
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def jobs_stamp(self) -> tuple[Any, ...]:
        """What changes when the jobs page must: each job's summary time."""
        out = []
        try:
            entries = sorted(os.scandir(self.history.root), key=lambda e: e.name)
        except OSError:
            return ()
        for e in entries:
            try:
                st = os.stat(os.path.join(e.path, SUMMARY_NAME))
                out.append((e.name, st.st_mtime_ns))
            except OSError:
                continue
        return tuple(out)


def read_tail(path: str, limit: int) -> bytes:
    """The last `limit` bytes of a file (a log), or a line saying why it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read()
    except OSError as exc:
        return f"[cannot read {path}: {exc}]".encode()
