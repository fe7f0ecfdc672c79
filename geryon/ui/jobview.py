"""What a job's pages show, computed from its record: progress, timeline lanes, skew, failures.

Pure functions over the dicts `geryon.mapreduce.jobhistory` reads (job.json with its events); time
is a parameter (`now`, for running attempts). The timeline has one row per cpu slot: a
cpu's attempts are packed greedily into as few rows as never overlap (a node with 2 slots
running 2 attempts at once gets 2 rows), one bar per attempt.

Not here: reading files (the server asks `JobHistory`), HTML and SVG (`geryon.ui.pages`,
`geryon.ui.svg`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from geryon.mapreduce.attempt import AttemptId, AttemptState
from geryon.mapreduce.jobhistory import JobState, phase_counts, phase_of, task_order

log = logging.getLogger(__name__)

DEFAULT_SLOWEST = 5
"""Tasks listed as the slowest of a job."""

ATTEMPT_STATES = tuple(s.value for s in AttemptState)
"""States a bar can have (its CSS class is `state-<state>`)."""


@dataclass(frozen=True)
class Bar:
    """One attempt on the timeline."""

    task: str
    attempt: int
    cpu: str
    row: int          # index into `Timeline.rows`
    start: float
    end: float
    state: str
    error: str = ""

    @property
    def label(self) -> str:
        return str(AttemptId(self.task, self.attempt))


@dataclass(frozen=True)
class Timeline:
    """Rows (`cpu/slot` labels) and bars, over [t0, t1]."""

    rows: tuple[str, ...]
    bars: tuple[Bar, ...]
    t0: float
    t1: float


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def timeline(record: dict[str, Any], now: float) -> Timeline:
    """The record's attempts as bars, one row per cpu slot (cpus in name order)."""
    attempts = [a for a in record.get("attempts") or [] if isinstance(a, dict) and _num(a.get("started")) is not None]
    by_cpu: dict[str, list[dict[str, Any]]] = {}
    for a in attempts:
        by_cpu.setdefault(str(a.get("cpu") or "?"), []).append(a)
    rows: list[str] = []
    bars: list[Bar] = []
    t0 = min((_num(a["started"]) or 0.0 for a in attempts), default=_num(record.get("started")) or now)
    t1 = t0
    for cpu in sorted(by_cpu):
        lanes: list[float] = []          # end time of each lane of this cpu
        first = len(rows)
        for a in sorted(by_cpu[cpu], key=lambda a: (a["started"], task_order(str(a.get("task", ""))))):
            start = _num(a["started"]) or t0
            end = _num(a.get("ended"))
            if end is None:
                end = max(now, start) if a.get("state") == AttemptState.RUNNING else start
            lane = next((i for i, free_at in enumerate(lanes) if free_at <= start), None)
            if lane is None:
                lane = len(lanes)
                lanes.append(end)
                rows.append(f"{cpu}/{lane}")
            lanes[lane] = end
            t1 = max(t1, end)
            bars.append(Bar(str(a.get("task", "?")), int(a.get("attempt") or 0), cpu, first + lane, start, end,
                            str(a.get("state") or AttemptState.RUNNING), str(a.get("error") or "")))
    return Timeline(tuple(rows), tuple(bars), t0, max(t1, t0 + 1e-3))


def progress(record: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per phase (map, reduce): tasks total, done, running, failed."""
    return phase_counts(record)


def input_bytes(record: dict[str, Any]) -> int:
    """Bytes the job's maps read (each map task counted once, by its done attempt); of a
    multi-step job, its first step's maps (the later ones read the steps' outputs)."""
    seen: dict[str, int] = {}
    for a in record.get("attempts") or []:
        if phase_of(str(a.get("task", ""))) in ("map", "step 1 map") and a.get("state") == AttemptState.DONE:
            seen[a["task"]] = int(_num(a.get("bytes_in")) or 0)
    return sum(seen.values())


def output_of(record: dict[str, Any]) -> str:
    """Where the job's output went: its directory, else its part URLs, else ''."""
    summary = record.get("summary") or {}
    if not isinstance(summary, dict):
        return ""
    if summary.get("output"):
        return str(summary["output"])
    urls = summary.get("urls") or summary.get("parts") or []
    if isinstance(urls, list) and urls:
        first = str(urls[0])
        return first.rsplit("/", 1)[0] + "/" if len(urls) > 1 else first
    return ""


def duration(record: dict[str, Any], now: float) -> float | None:
    """Seconds the job took, or has taken so far."""
    seconds = _num(record.get("seconds"))
    if seconds is not None:
        return seconds
    started = _num(record.get("started"))
    return None if started is None or record.get("state") != JobState.RUNNING else max(0.0, now - started)


def slowest(record: dict[str, Any], n: int = DEFAULT_SLOWEST) -> list[dict[str, Any]]:
    """The `n` longest done attempts, longest first."""
    done = [a for a in record.get("attempts") or [] if a.get("state") == AttemptState.DONE and _num(a.get("seconds")) is not None]
    return sorted(done, key=lambda a: -(_num(a["seconds"]) or 0.0))[:n]


def shuffled(record: dict[str, Any]) -> list[tuple[str, int]]:
    """(reduce task, bytes it fetched) for every reducer with a done attempt, in task order (of a
    multi-step job, every step's: `s1.r0`, ..., `s2.r0`, ...)."""
    out: dict[str, int] = {}
    for a in record.get("attempts") or []:
        phase = phase_of(str(a.get("task", "")))
        if (phase == "reduce" or phase.startswith("step ") and phase.endswith(" reduce")) and \
                a.get("state") == AttemptState.DONE:
            out[a["task"]] = int(_num(a.get("bytes_in")) or 0)
    return sorted(out.items(), key=lambda kv: task_order(kv[0]))


def running_on(record: dict[str, Any]) -> dict[str, int]:
    """Attempts running now per cpu (none once the job has ended)."""
    if record.get("state") != JobState.RUNNING:
        return {}
    out: dict[str, int] = {}
    for a in record.get("attempts") or []:
        if a.get("state") == AttemptState.RUNNING:
            cpu = str(a.get("cpu") or "?")
            out[cpu] = out.get(cpu, 0) + 1
    return out


def failures(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Attempts that failed or were lost, in task order."""
    bad = [a for a in record.get("attempts") or [] if a.get("state") in (AttemptState.FAILED, AttemptState.LOST)]
    return sorted(bad, key=lambda a: (task_order(str(a.get("task", ""))), a.get("attempt", 0)))


def counters(record: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(group, name, value) of the job's counters, sorted."""
    raw = (record.get("summary") or {}).get("counters") if isinstance(record.get("summary"), dict) else None
    out: list[tuple[str, str, Any]] = []
    if isinstance(raw, dict):
        for group, names in raw.items():
            if isinstance(names, dict):
                out.extend((str(group), str(name), value) for name, value in names.items())
            else:
                out.append((str(group), "", names))
    return sorted(out, key=lambda t: (t[0], t[1]))
