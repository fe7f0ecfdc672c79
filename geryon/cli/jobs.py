"""CLI verbs: geryon jobs [JOB] and geryon logs JOB [TASK], reading the job history.

The history is what the driver records through `geryon.mapreduce.jobstore` while a job runs; these
verbs only read it. Where it lives: --jobs-dir, else $GERYON_JOBS_DIR, else
$XDG_DATA_HOME/geryon/jobs, else ~/.local/share/geryon/jobs (`jobs_dir`).
Not here: writing or pruning records (the store does both).
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import time
from typing import Any

import click

from geryon.mapreduce.attempt import AttemptId, AttemptState
from geryon.cli.common import existing_secret, fail, secret_option
from geryon.errors import GeryonError
from geryon.mapreduce.joboutput import removed
from geryon.mapreduce.joboutput import where as output_of
from geryon.mapreduce.jobstore import JobState, JobStore, phase_counts, task_order
from geryon.defaults import DEFAULT_JOBS_LISTED as DEFAULT_LIST

SLOWEST = 5
"""Tasks listed under "slowest tasks" in a job's details."""

_STATE_STYLES = {JobState.SUCCEEDED: "green", JobState.RUNNING: "yellow", JobState.FAILED: "red", JobState.LOST: "red",
                 JobState.KILLED: "magenta"}
_COLUMNS = ("ID", "NAME", "MODE", "STATE", "STARTED", "DURATION", "TASKS", "ATTEMPTS", "FAILED")


def jobs_dir(option: str | None) -> str:
    """Where job records live: the option, $GERYON_JOBS_DIR, $XDG_DATA_HOME/geryon/jobs, ~/.local/share/geryon/jobs."""
    if option:
        return option
    if os.environ.get("GERYON_JOBS_DIR"):
        return os.environ["GERYON_JOBS_DIR"]
    xdg = os.environ.get("XDG_DATA_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec: a relative value is invalid and ignored
        return os.path.join(xdg, "geryon", "jobs")
    return os.path.join(os.path.expanduser("~"), ".local", "share", "geryon", "jobs")


def _jobs_dir_option(f: Any) -> Any:
    return click.option("--jobs-dir", "jobs_dir_opt", type=click.Path(file_okay=False), default=None,
                        help="Where job records live [$GERYON_JOBS_DIR, else $XDG_DATA_HOME/geryon/jobs, "
                             "else ~/.local/share/geryon/jobs].")(f)


@click.command("jobs")
@click.argument("job", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the record(s) as JSON.")
@click.option("-n", "count", type=click.IntRange(min=1), default=DEFAULT_LIST, show_default=True,
              help="Show the newest N jobs.")
@_jobs_dir_option
def jobs(job: str | None, as_json: bool, count: int, jobs_dir_opt: str | None) -> None:
    """List recent jobs, newest first, or show one JOB (an id or a unique prefix of one)."""
    store = JobStore(jobs_dir(jobs_dir_opt))
    try:
        if job is not None:
            record = store.read(job)
        else:
            summaries = store.list()[:count]
    except GeryonError as exc:
        fail(str(exc))
    if job is not None:
        if as_json:
            click.echo(json.dumps(record, indent=2, default=str))
        else:
            _details(record, store.root)
        return
    if as_json:
        click.echo(json.dumps(summaries, indent=2, default=str))
    elif not summaries:
        click.echo(f"geryon: no jobs in {store.root}", err=True)
    else:
        _table([_row(s) for s in summaries])


@click.command("logs")
@click.argument("job")
@click.argument("task", required=False)
@_jobs_dir_option
def logs(job: str, task: str | None, jobs_dir_opt: str | None) -> None:
    """Print the stderr of JOB's task attempts (or of TASK, e.g. m3 or r0), each line prefixed TASK.aN."""
    store = JobStore(jobs_dir(jobs_dir_opt))
    try:
        record = store.read(job)
        paths = store.log_paths(record["id"], task)
    except GeryonError as exc:
        fail(str(exc))
    if task is not None and not paths and task not in {a.get("task") for a in record.get("attempts", [])}:
        fail(f"job {record['id']} has no task {task!r}")
    for name, attempt, path in paths:
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", errors="replace")
        except OSError as exc:
            fail(f"cannot read {path}: {exc}")
        prefix = f"{AttemptId(name, attempt)}: "
        lines = text.splitlines()
        if lines:
            click.echo("".join(f"{prefix}{line}\n" for line in lines), nl=False)


@click.command("rm")
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB...")
@secret_option
@_jobs_dir_option
def rm(job_ids: tuple[str, ...], secret_file: str | None, jobs_dir_opt: str | None) -> None:
    """Remove the output of each JOB everywhere: its local output directory's parts and
    _SUCCESS, and its parts on the nodes. The job's record stays."""
    from geryon.mapreduce.joboutput import remove
    from registry.errors import RegistryError

    store = JobStore(jobs_dir(jobs_dir_opt))
    try:
        secret = existing_secret(secret_file)
        for job in job_ids:
            record = store.read(job)
            if record.get("state") == JobState.RUNNING:
                raise GeryonError(f"job {record['id']} is still running")
            gone = remove(record, store.root, secret)
            click.echo(f"{record['id']}: removed {len(gone)} item(s)")
    except (GeryonError, RegistryError, OSError) as exc:
        fail(str(exc))


# -- the list ------------------------------------------------------------------------------
def _row(s: dict[str, Any]) -> list[str]:
    started = s.get("started")
    seconds = s.get("seconds")
    if seconds is None and s.get("state") == JobState.RUNNING and isinstance(started, (int, float)):
        seconds = time.time() - started  # still going
    return [s["id"], str(s.get("name", "")), str(s.get("mode", "")), str(s.get("state", "")), _when(started),
            _duration(seconds), f"{s.get('tasks_done', 0)}/{s.get('tasks_total', 0)}", str(s.get("attempts", 0)),
            str(s.get("failed_attempts", 0))]


def _table(rows: list[list[str]]) -> None:
    if _tty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        widths = [max(len(column), *(len(r[i]) for r in rows)) for i, column in enumerate(_COLUMNS)]
        table = Table(box=None, header_style="bold")
        for i, column in enumerate(_COLUMNS):
            table.add_column(column, justify="right" if i >= 5 else "left", no_wrap=True)
        for row in rows:
            state = Text(row[3], style=_STATE_STYLES.get(row[3], ""))
            table.add_row(*row[:3], state, *row[4:])
        console = Console()
        needed = sum(widths) + 2 * len(widths)  # box=None pads each cell by one on either side
        if needed > console.width:  # a narrow terminal wraps whole lines rather than rich cutting ids
            console = Console(width=needed)
        console.print(table)
        return
    everything = [list(_COLUMNS), *rows]
    widths = [max(len(r[i]) for r in everything) for i in range(len(_COLUMNS))]
    for r in everything:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _tty() -> bool:
    return sys.stdout.isatty()


def _when(t: Any) -> str:
    if not isinstance(t, (int, float)):
        return "-"
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    if seconds < 1:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# -- one job -------------------------------------------------------------------------------
def _details(r: dict[str, Any], root: str) -> None:
    say = click.echo
    summary = r.get("summary") or {}
    attempts = r.get("attempts") or []
    say(f"job         {r['id']}")
    say(f"name        {r.get('name', '')}   mode {r.get('mode', '')}   state {r.get('state', '')}")
    if r.get("state") == JobState.LOST:
        say(f"            its driver (pid {r.get('pid')} on {r.get('host')}) is gone without finishing")
    command = r.get("argv") or r.get("command")
    if command:
        say(f"command     {' '.join(command) if isinstance(command, list) else command}")
    for key in ("map", "reduce"):
        if r.get(key):
            say(f"{key:<12}{r[key]}")
    for i, step in enumerate(r.get("steps") or [], 1):   # a multi-step job
        say(f"{f'step {i}':<12}{step}")
    say(f"started     {_when(r.get('started'))}   ended {_when(r.get('ended'))}   "
        f"duration {_duration(r.get('seconds'))}")
    say(f"driver      pid {r.get('pid')} on {r.get('host')}")
    say(f"disks       {' '.join(map(str, r.get('disks') or [])) or '-'}")
    if r.get("partitions"):
        say(f"partitions  {r['partitions']}")
    say(f"cpus        {' '.join(map(str, r.get('cpus') or [])) or '-'}")
    used: dict[str, int] = {}
    for a in attempts:
        if a.get("cpu"):
            used[a["cpu"]] = used.get(a["cpu"], 0) + 1
    if used:
        say("cpus used   " + ", ".join(f"{c} ({n} attempt{'s' if n != 1 else ''})" for c, n in sorted(used.items())))
    phases = []
    for phase, c in phase_counts(r).items():
        extra = ", ".join(f"{c[k]} {k}" for k in ("running", "failed") if c[k])
        phases.append(f"{phase} {c['done']}/{c['total']} done" + (f" ({extra})" if extra else ""))
    say(f"tasks       {', '.join(phases) or '-'}")
    by_state: dict[str, int] = {}
    for a in attempts:
        by_state[a.get("state", "")] = by_state.get(a.get("state", ""), 0) + 1
    say(f"attempts    {len(attempts)}" + "".join(f", {n} {s}" for s, n in sorted(by_state.items()) if s != AttemptState.DONE))
    done = [a for a in attempts if a.get("state") == AttemptState.DONE and isinstance(a.get("seconds"), (int, float))]
    if done:
        say("slowest tasks")
        for a in sorted(done, key=lambda a: -a["seconds"])[:SLOWEST]:
            say(f"  {a['task']:<8}{a.get('cpu', ''):<20} {a['seconds']:.2f} s")
    bad = [a for a in attempts if a.get("state") in (AttemptState.FAILED, AttemptState.LOST, AttemptState.KILLED)]
    if bad:
        say("failed attempts")
        for a in sorted(bad, key=lambda a: (task_order(a["task"]), a["attempt"])):
            where = f" on {a['cpu']}" if a.get("cpu") else ""
            first, *rest = (a.get("error") or "(no message)").splitlines() or [""]
            say(f"  {AttemptId(a['task'], a['attempt'])} {a['state']}{where}: {first}")
            for line in rest:
                say(f"      {line}")
    if summary.get("error"):
        first, *rest = str(summary["error"]).splitlines() or [""]
        say(f"error       {first}")
        for line in rest:
            say(f"            {line}")
    events = r.get("events") or []
    if events:
        say("events")
        for e in events:
            first, *rest = e["text"].splitlines() or [""]
            say(f"  {e['time']}  {first}")
            for line in rest:
                say(f"      {line}")
    counters = summary.get("counters") or {}
    if counters:
        say("counters")
        for group, names in sorted(counters.items()):
            for name, n in sorted(names.items()) if isinstance(names, dict) else [("", names)]:
                say(f"  {group}/{name} {n}" if name else f"  {group} {n}")
    out, urls = output_of(r)
    if removed(root, r["id"]):
        say("output      removed (geryon rm)")
    elif out or urls:
        say(f"output      {out or 'on the nodes'}   (as input: geryon-output-of-{r['id']})")
    parts = summary.get("parts") or []
    if parts:
        say("parts")
        for p in parts:
            say(f"  {p}")


commands: list[click.Command] = [jobs, logs, rm]
