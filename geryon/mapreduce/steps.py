"""Multi-step jobs (mrjob's `steps()`): run the steps one after the other, each one's output the next one's input.

Each step is a job of its own to the one driver (`geryon.mapreduce.engine`), with its own map,
combine, reduce, R and partitioner; the multi-step job gives every step its settings (reader of
the first step, output format of the last, budgets, parameters, files). Between two Python steps
the records keep the engine's own encoding: the step writes its parts as msgpack blocks
(`codec.PAIRS`) and the next step's map reads them back exactly (the `pairs` reader), with no round
trip through text. A streaming step writes text lines; a Python step after it reads them as
`key<TAB>value` (the `keyvalue` reader), and a streaming step after a Python one reads text lines.

Where the steps' outputs live: locally in a temporary directory (under `--workdir`), on a cluster
on the nodes' output disks as `JOB-s<i>/part-0000r` (the next step reads them by URL); never on an
input disk, and removed when the job ends, whether it succeeded or not. A driver killed between
steps leaves none for long: each is listed in the job's record before its step runs (`geryon rm
JOB` removes what is listed), the local directory is a `scratch.Scratch` the next local run
sweeps, and on a cluster each node removes a step output its driver no longer holds
(`outputholds`, `geryon.node.heldoutputs`). Only the last step writes
the job's output, so a failed step commits nothing. Progress, records (`s2.m0` attempts, step
events) and the summary name the step. Not here: running a step (the driver, `api`).
"""
from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any

from geryon.errors import GeryonError, JobFailed, UnknownDisk
from geryon.mapreduce.attempt import step_job_id, step_prefix, step_task_name
from geryon.mapreduce.codec import PAIRS
from geryon.mapreduce.counters import merge
from geryon.mapreduce.job import Job, identity_map
from geryon.mapreduce.report import JobReport
from geryon.mapreduce.runs import JobResult
from geryon.mapreduce.scratch import Scratch

log = logging.getLogger(__name__)

_STEP_FIELDS = ("map", "reduce", "combine", "partitions", "partitioner", "partition", "sort_values", "total_order",
                "key_fields", "partition_fields", "partition_cmd",
                "map_init", "map_final", "reduce_init", "reduce_final")
"""What a step of a multi-step job gives itself; the rest is the multi-step job's."""


def _writes_text(step: Job) -> bool:
    """A streaming reduce (or a map-only step's streaming map) writes its own text lines."""
    last = step.map if step.map_only else step.reduce
    return last is not None and last.streaming


def step_jobs(job: Job) -> list[Job]:
    """The steps of `job` as the driver runs them: each with the job's settings, the reader of
    what the step before wrote, and the format the step after reads."""
    steps: Sequence[Job] = job.steps or (job,)
    out: list[Job] = []
    reader = job.reader
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        if last:
            fmt = job.format
        elif steps[i + 1].map is not None and steps[i + 1].map.streaming:
            fmt = "text"    # a streaming map reads text lines
        else:
            fmt = PAIRS
        env = tuple(p for p in job.env if p[0] != "GERYON_PARTITIONS") + (("GERYON_PARTITIONS", str(step.partitions)),)
        settings = {f: getattr(step, f) for f in _STEP_FIELDS}
        out.append(Job(**settings, name=job.name, reader=reader, format=fmt, sort_budget=job.sort_budget,
                       split_size=job.split_size, env=env, skip_bad=job.skip_bad if i == 0 else 0,
                       params=job.params, cmdenv=job.cmdenv, files=job.files, py_files=job.py_files))
        reader = "keyvalue" if (_writes_text(step) or fmt == "text") else "pairs"
    return out


def step_id(job_id: str, index: int, count: int) -> str:
    """The id step `index` (from 1) runs under: the job's own for the last (its output is the
    job's), `JOB-s<index>` for the others."""
    return job_id if index == count else step_job_id(job_id, index)


class StepProgress:
    """A job's progress, each phase named with its step (`step 2/3 map`)."""

    def __init__(self, inner: Any, index: int, count: int) -> None:
        self.inner, self.label = inner, f"step {index}/{count}"

    def phase(self, name: str, total: int, nbytes: int) -> None:
        self.inner.phase(f"{self.label} {name}", total, nbytes)

    def task_done(self, result: Any) -> None:
        self.inner.task_done(result)

    def message(self, text: str) -> None:
        self.inner.message(f"{self.label}: {text}")

    def running(self, running: int, failed: int) -> None:
        show = getattr(self.inner, "running", None)
        if show is not None:
            show(running, failed)


class StepRecord:
    """A job's record as one step's driver writes it: tasks named `s<i>.m0`, `s<i>.r1` (so
    `geryon logs JOB s2.r0` finds them), events prefixed with the step."""

    def __init__(self, inner: Any, index: int) -> None:
        self.inner, self.index = inner, index
        self.prefix = step_prefix(index)
        self.job_id = inner.job_id

    def attempt_started(self, task: str, attempt: int, cpu: str, input: str = "") -> None:
        self.inner.attempt_started(step_task_name(self.index, task), attempt, cpu, input)

    def attempt_ended(self, task: str, attempt: int, state: str, **kw: Any) -> None:
        self.inner.attempt_ended(step_task_name(self.index, task), attempt, state, **kw)

    def stderr(self, task: str, attempt: int, data: bytes) -> None:
        self.inner.stderr(step_task_name(self.index, task), attempt, data)

    def event(self, text: str) -> None:
        self.inner.event(f"step {self.index}: {text}")

    def update_info(self, info: dict[str, Any]) -> None:
        info = dict(info)
        maps = info.pop("maps", None)
        if maps is not None:
            info[f"step{self.index}_maps"] = maps
        self.inner.update_info(info)


def _wrap(index: int, count: int, step: Job, exc: GeryonError) -> GeryonError:
    """A step's failure, its first line naming the step."""
    what = [] if step.map is None or step.map.func is identity_map else [f"map {step.map.describe()}"]
    if step.reduce is not None:
        what.append(f"reduce {step.reduce.describe()}")
    text = f"step {index} of {count} ({', '.join(what) or 'identity'}): {exc}"
    return JobFailed(text) if isinstance(exc, JobFailed) else GeryonError(text)


RunStep = Callable[[Job, Sequence[Any], "str | None", Any, Any, str, Any], JobResult]
"""Runs one step: (its job, its inputs, its output directory or None, progress, record, job id,
echo) -> its result."""


INTERMEDIATE = "intermediate"
"""The key of a multi-step job's record listing its intermediate step outputs not removed yet,
each `{"step": i, "id": "JOB-s<i>", "dir": local directory}` or `{..., "nodes": [host:port, ...]}`
(written before the step runs, so a driver killed at any time leaves them findable: `geryon rm`)."""


def _note(record: Any, left: list[dict[str, Any]]) -> None:
    """Write the outputs still left in the record, at once."""
    if record is not None:
        record.update_info({INTERMEDIATE: [dict(e) for e in left]})
        flush = getattr(record, "flush", None)
        if flush is not None:
            flush()


def run_steps(job: Job, disks: Sequence[Any], run_step: RunStep, *, out: str | None, job_id: str,
              progress: Any = None, record: Any = None, echo: Any = None,
              next_inputs: Callable[[JobResult], list[Any]],
              intermediate_out: Callable[[int, str], "tuple[str | None, dict[str, Any]]"],
              remove: Callable[[dict[str, Any]], None], steps: Sequence[Job] | None = None) -> JobResult:
    """Run every step of `job` in order; the result is the last step's, its report listing every step's.

    Args:
        run_step: runs one step where the job runs (locally, on a cluster).
        next_inputs: what the next step reads of a step's result (its part files or URLs).
        intermediate_out: readies the output of step i (not the last; its id given): returns
            where the step writes it (None: its nodes) and where it will be, for the record
            (`{"dir": ...}` or `{"nodes": [...]}`).
        remove: removes a step's output (not the last), given its record entry.
        steps: `step_jobs(job)`, if the caller has them already.
    Raises:
        JobFailed, GeryonError: the first line names the failed step; UnknownDisk (step 1's input).
    """
    steps = list(steps) if steps is not None else step_jobs(job)
    count = len(steps)
    inputs: list[Any] = list(disks)
    reports: list[JobReport] = []
    left: list[dict[str, Any]] = []   # the intermediate outputs made (or being made), not removed yet
    try:
        for i, step in enumerate(steps, 1):
            last = i == count
            sid = step_id(job_id, i, count)
            step_echo = None if echo is None else (lambda line, p=step_prefix(i): echo(p + line))
            step_out = out
            if not last:
                step_out, where = intermediate_out(i, sid)
                left.append({"step": i, "id": sid, **where})
                _note(record, left)
            try:
                result = run_step(step, inputs, step_out,
                                  StepProgress(progress, i, count) if progress is not None else None,
                                  StepRecord(record, i) if record is not None else None, sid, step_echo)
            except GeryonError as exc:
                if i == 1 and isinstance(exc, UnknownDisk):   # the job never started
                    raise
                raise _wrap(i, count, step, exc) from exc
            reports.append(result.report)
            if record is not None:
                record.event(f"step {i} of {count} done: {len(result.report.parts)} part(s)")
            if not last:
                nodes = {u[len("geryon://"):].split("/", 1)[0] for u in result.report.urls}
                if nodes - set(left[-1].get("nodes", ())):   # a node that joined the cluster meanwhile
                    left[-1]["nodes"] = sorted(nodes | set(left[-1].get("nodes", ())))
                    _note(record, left)
                inputs = next_inputs(result)
    finally:
        kept = []
        for entry in left:
            try:
                remove(entry)
            except Exception as exc:   # the job's outcome stands; say what is left behind
                log.warning("step output %s not removed: %s", entry["id"], exc)
                kept.append(entry)
                if record is not None:
                    record.event(f"step output {entry['id']} not removed: {exc}")
        if left:
            _note(record, kept)
    final = reports[-1]
    report = JobReport(job_id, job.name, final.out_dir, final.parts, final.format, map=reports[0].map,
                       reduce=final.reduce, seconds=sum(r.seconds for r in reports),
                       shuffled=sum(r.shuffled for r in reports),
                       slowest=sorted(((step_task_name(i, a), c, t) for i, r in enumerate(reports, 1) for a, c, t in r.slowest),
                                      key=lambda x: -x[2])[:len(final.slowest) or 5],
                       failed_attempts=sum(r.failed_attempts for r in reports), urls=final.urls,
                       part_bytes=final.part_bytes)
    merge(report.counters, [r.counters for r in reports])
    report.steps = reports
    return JobResult(report, secret=result.secret)


# -- where the steps run ------------------------------------------------------------------------

def run_local_steps(job: Job, disks: Sequence[Any], run_job: Callable[..., JobResult], *, out: str | None, workers: int | None, ndb: str | None,
                    progress: Any, workdir: str | None, record: Any, job_id: str | None, echo: Any) -> JobResult:
    """A multi-step job on this machine (each step run by `run_job`, `api.run_job`): the steps'
    outputs in a temporary directory."""
    from geryon.disks.resolve import Disk, resolve_inputs
    from geryon.mapreduce.engine import new_job_id
    from geryon.mapreduce.runs import _with_reader, check_outside_inputs

    resolved = [d for arg in disks for d in ([arg] if isinstance(arg, Disk) else resolve_inputs([str(arg)], ndb))]
    job = _with_reader(job, [(d.name, d.format) for d in resolved])
    out_dir = os.path.abspath(out or os.path.join(os.getcwd(), f"{job.name}.out"))
    check_outside_inputs(resolved, out_dir, workdir)
    job_id = job_id or new_job_id(job.name)
    scratch = Scratch(f"geryon-{job_id}-steps-", workdir)   # a later run sweeps it if we die
    tmp = scratch.path
    try:
        check_outside_inputs(resolved, tmp)

        def run_step(step: Job, inputs: Sequence[Any], step_out: str | None, prog: Any, rec: Any, sid: str,
                     step_echo: Any) -> JobResult:
            return run_job(step, inputs, out=step_out, workers=workers, ndb=ndb, progress=prog, workdir=workdir,
                           record=rec, job_id=sid, echo=step_echo)

        def next_inputs(result: JobResult) -> list[Any]:
            return resolve_inputs(list(result.parts)) if result.parts else []

        return run_steps(job, resolved, run_step, out=out_dir, job_id=job_id, progress=progress, record=record,
                         echo=echo, next_inputs=next_inputs,
                         intermediate_out=lambda i, sid: (os.path.join(tmp, f"step{i}"),
                                                          {"dir": os.path.join(tmp, f"step{i}")}),
                         remove=lambda entry: shutil.rmtree(entry["dir"], ignore_errors=True))
    finally:
        scratch.close()


def run_cluster_steps(job: Job, disks: Sequence[str], registry: Any, secret: bytes | None,
                      run_cluster_job: Callable[..., JobResult], *, out: str | None,
                      progress: Any, record: Any, lease: float | None, echo: Any, job_id: str | None,
                      pick: str) -> JobResult:
    """A multi-step job on a cluster: each step's output stays on its nodes (`JOB-s<i>/`), read by
    the next step by URL, and is removed from them at the end (each step run by `run_cluster_job`,
    `api.run_cluster_job`). One job pack carries every step (`jobpack.build` of the steps); each
    step's tasks name their step in it."""
    from geryon.cluster.members import find_cluster
    from geryon.mapreduce.engine import new_job_id
    from geryon.mapreduce.jobpack import build
    from geryon.mapreduce.joboutput import remove_on_nodes
    from geryon.mapreduce.outputholds import OutputHolds
    from geryon.mapreduce.runs import _with_reader
    from geryon.defaults import DEFAULT_LEASE

    job_id = job_id or new_job_id(job.name)
    found, cpus = find_cluster([str(d) for d in disks], registry)   # the reader the first step's disks recorded
    job = _with_reader(job, [(d.name, d.format) for d in found])
    steps = step_jobs(job)
    pack = build(steps)
    index = {id(s): i for i, s in enumerate(steps)}

    def run_step(step: Job, inputs: Sequence[Any], step_out: str | None, prog: Any, rec: Any, sid: str,
                 step_echo: Any) -> JobResult:
        return run_cluster_job(step, [str(d) for d in inputs], registry, secret, out=step_out, progress=prog,
                               record=rec, lease=lease, echo=step_echo, job_id=sid, pick=pick, pack=pack,
                               step=index[id(step)])

    def next_inputs(result: JobResult) -> list[Any]:
        return list(result.report.urls)

    holds = OutputHolds(secret, lease or DEFAULT_LEASE)

    def intermediate_out(i: int, sid: str) -> tuple[None, dict[str, Any]]:
        """Step i's output: held on every node before the step runs (the nodes remove it if we die)."""
        holds.hold(cpus, sid)
        return None, {"nodes": sorted({str(c.authority) for c in cpus})}

    def remove(entry: dict[str, Any]) -> None:
        _, failures = remove_on_nodes(entry["id"], [f"geryon://{a}/" for a in entry["nodes"]], secret)
        holds.release(entry["id"])
        if failures:
            raise GeryonError("; ".join(failures))

    try:
        return run_steps(job, disks, run_step, out=out, job_id=job_id, progress=progress, record=record, echo=echo,
                         next_inputs=next_inputs, intermediate_out=intermediate_out, remove=remove, steps=steps)
    finally:
        holds.close()


__all__ = ["StepProgress", "StepRecord", "run_cluster_steps", "run_local_steps", "run_steps",
           "step_id", "step_jobs"]
