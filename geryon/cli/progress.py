"""Showing a job as it runs: a live rich display on a terminal, plain lines elsewhere.

Both implement the driver's `Progress` protocol and can print the closing summary
(records in and out per phase, counters, time). Only what a person reads is here.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from geryon.mapreduce.engine import JobReport
from geryon.mapreduce.task import TaskResult


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class LineProgress:
    """Plain progress lines, for logs and pipes (no escape codes)."""

    def __init__(self, stream: TextIO | None = None, every: float = 2.0) -> None:
        self._out = stream or sys.stderr
        self._every = every
        self._phase = ""
        self._total = 0
        self._done = 0
        self._records = 0
        self._last = 0.0
        self._running = ""

    def running(self, running: int, failed: int) -> None:
        """Attempts running now and failed so far (cluster mode)."""
        self._running = f", {running} running, {failed} failed"

    def phase(self, name: str, total: int, nbytes: int) -> None:
        self._phase, self._total, self._done, self._records = name, total, 0, 0
        print(f"geryon: {name}: {total} tasks, {human_bytes(nbytes)}", file=self._out, flush=True)

    def task_done(self, result: TaskResult) -> None:
        self._done += 1
        self._records += result.records_in
        now = time.monotonic()
        if now - self._last >= self._every or self._done == self._total:
            self._last = now
            print(f"geryon: {self._phase}: {self._done}/{self._total} tasks done{self._running}, "
                  f"{self._records:,} records in", file=self._out, flush=True)

    def message(self, text: str) -> None:
        print(f"geryon: {text}", file=self._out, flush=True)

    def close(self) -> None:
        pass


class RichProgress:
    """A live bar per phase: tasks done/total, records and bytes."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._bars = Progress(
            TextColumn("[bold]{task.description:<7}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[records]:>12,} records  {task.fields[nbytes]}{task.fields[running]}"),
            TimeElapsedColumn(),
            console=self._console, transient=False,
        )
        self._bars.start()
        self._task = None
        self._records = 0

    def phase(self, name: str, total: int, nbytes: int) -> None:
        self._records = 0
        self._task = self._bars.add_task(name, total=total, records=0, nbytes=human_bytes(nbytes), running="")

    def running(self, running: int, failed: int) -> None:
        """Attempts running now and failed so far (cluster mode)."""
        if self._task is not None:
            self._bars.update(self._task, running=f"  {running} running, {failed} failed")

    def task_done(self, result: TaskResult) -> None:
        if self._task is not None:
            self._records += result.records_in
            self._bars.update(self._task, advance=1, records=self._records)

    def message(self, text: str) -> None:
        self._bars.console.print(text)

    def close(self) -> None:
        self._bars.stop()


def summary_lines(report: JobReport) -> list[str]:
    """The closing summary as plain lines."""
    m, r = report.map, report.reduce
    lines = [
        f"job {report.job_id}: done in {report.seconds:.2f}s",
        f"  map:    {m.tasks} tasks, {m.records_in:,} records in, {m.records_out:,} pairs out, "
        f"{human_bytes(m.bytes_in)} read, {human_bytes(m.bytes_out)} shuffled, {m.seconds:.2f}s",
        f"  reduce: {r.tasks} tasks, {r.records_in:,} keys in, {r.records_out:,} records out, "
        f"{human_bytes(r.bytes_out)} written, {r.seconds:.2f}s",
    ]
    if report.steps:   # a multi-step job: each step's phases instead
        lines[1:] = []
        for i, step in enumerate(report.steps, 1):
            m, r = step.map, step.reduce
            lines.append(f"  step {i}/{len(report.steps)} map:    {m.tasks} tasks, {m.records_in:,} records in, "
                         f"{m.records_out:,} pairs out, {human_bytes(m.bytes_in)} read, {m.seconds:.2f}s")
            lines.append(f"  step {i}/{len(report.steps)} reduce: {r.tasks} tasks, {r.records_in:,} keys in, "
                         f"{r.records_out:,} records out, {human_bytes(r.bytes_out)} written, {r.seconds:.2f}s")
    lines.append(f"  shuffle: {human_bytes(report.shuffled)}, {report.failed_attempts} failed attempt(s)")
    if report.balance:
        lines.append("  " + balance_line(report))
    if report.slowest:
        lines.append("  slowest: " + ", ".join(f"{t} on {c} {s:.2f}s" for t, c, s in report.slowest))
    for group, values in sorted(report.counters.items()):
        for name, value in sorted(values.items()):
            lines.append(f"  counter {group}/{name}: {value:,}")
    return lines


def balance_line(report: JobReport) -> str:
    """A total-order job's parts: the largest over the mean, in shuffled bytes."""
    sizes = report.part_bytes
    return (f"total order: largest part {human_bytes(max(sizes))}, {report.balance:.2f}x the mean "
            f"({human_bytes(sum(sizes) // len(sizes))}) of {len(sizes)} parts")


def summary_table(report: JobReport) -> Table:
    caption = f"shuffled {human_bytes(report.shuffled)}, {report.failed_attempts} failed attempt(s)"
    if report.balance:
        caption += "; " + balance_line(report)
    if report.slowest:
        caption += "; slowest: " + ", ".join(f"{t} on {c} {s:.2f}s" for t, c, s in report.slowest[:3])
    table = Table(title=f"job {report.job_id} ({report.seconds:.2f}s)", show_edge=False, caption=caption)
    for col in ("phase", "tasks", "records in", "records out", "bytes in", "bytes out", "time"):
        table.add_column(col, justify="right" if col != "phase" else "left")
    phases = [("map", report.map), ("reduce", report.reduce)]
    if report.steps:   # a multi-step job: each step's phases
        phases = [(f"step {i} {name}", s) for i, step in enumerate(report.steps, 1)
                  for name, s in (("map", step.map), ("reduce", step.reduce))]
    for name, s in phases:
        table.add_row(name, str(s.tasks), f"{s.records_in:,}", f"{s.records_out:,}", human_bytes(s.bytes_in),
                      human_bytes(s.bytes_out), f"{s.seconds:.2f}s")
    for group, values in sorted(report.counters.items()):
        for cname, value in sorted(values.items()):
            table.add_row(f"{group}/{cname}", "", "", f"{value:,}", "", "", "")
    return table
