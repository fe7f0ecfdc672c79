"""Multi-step jobs on a Dask cluster: each step one run of the driver on the workers, its parts left on them for the next.

A multi-step job (`geryon.mapreduce.steps`) runs its steps one after the other through
`steps.run_steps`, as locally and on a Geryon cluster; one job pack carries every step and each
step's attempts name theirs. A step that is not the last commits nothing to the driver: its parts
stay staged on the workers that reduced them (`<local_directory>/geryon/jobs/JOB-s<i>/staging/`,
`daskcpu.KeptPolicy`), and the next step's maps read them from there, from the file when that worker is
on their host, else over Dask's comms (`daskworker.step_input`). The last step commits to the
output directory as a one-step job does; every step's files are removed from the workers when the
job ends, whether it succeeded or not. A worker that leaves between two steps takes its parts
with it: the step after fails, naming the part (the steps are not run again). Not here: running
one step (`geryon.mapreduce.daskcpu`), the steps' own rules (`geryon.mapreduce.steps`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from geryon.mapreduce import daskworker

log = logging.getLogger(__name__)


class _Sizes:
    """What the driver plans a later step's splits from: the sizes of the parts it reads (the
    bytes stay on the workers; only the maps open them)."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes

    def getsize(self, path: str) -> int:
        return self.sizes[path]

    def close(self) -> None:
        pass


def step_disks(job_id: str, kept: Sequence[tuple[str, str, int]]) -> tuple[list[Any], dict[str, tuple[str, tuple[str, ...]]]]:
    """The next step's inputs: one disk per part in part order (as local mode reads the part
    files), and the location a map opens for each (`daskworker.step_location`)."""
    from geryon.disks.resolve import Disk

    disks, locations = [], {}
    for r, (address, name, size) in enumerate(kept):
        disk_name = f"{job_id}/part-{r:05d}"
        path = "/" + name
        disks.append(Disk(disk_name, _Sizes({path: size}), files=(path,)))  # type: ignore[arg-type]
        locations[disk_name] = (daskworker.step_location(address, job_id), ())
    return disks, locations


def run_dask_steps(job: Any, resolved: list[Any], locations: dict[str, tuple[str, tuple[str, ...]]], client: Any,
                   run_on_workers: Callable[..., Any], *, out_dir: str, progress: Any, record: Any, echo: Any,
                   job_id: str, shuffle: str) -> Any:
    """Run the multi-step `job` on the client's workers, its first step reading `resolved`
    (`daskinputs.resolve_dask_inputs`), each step run by `run_on_workers` (`daskcpu.run_on_workers`).

    Raises:
        JobFailed, GeryonError: the first line names the failed step (`steps.run_steps`).
    """
    from geryon.mapreduce.jobpack import build
    from geryon.mapreduce.runs import JobResult
    from geryon.mapreduce.steps import run_steps, step_jobs

    steps = step_jobs(job)
    pack = build(steps)
    index = {id(s): i for i, s in enumerate(steps)}
    kept: dict[str, tuple[list[tuple[str, str, int]], dict[str, list[str]], Any]] = {}   # step id -> its parts
    state: dict[str, Any] = {"locations": locations, "dirs": {}}   # what the next step reads

    def run_step(step: Any, inputs: Sequence[Any], step_out: str | None, prog: Any, rec: Any, sid: str,
                 step_echo: Any) -> JobResult:
        last = step_out is not None
        report, workers, policy = run_on_workers(step, inputs, state["locations"], client, sid, pack, out_dir=step_out,
                                                 progress=prog, record=rec, echo=step_echo, shuffle=shuffle,
                                                 step=index[id(step)], input_dirs=state["dirs"], keep=not last)
        if not last:
            kept[sid] = (policy.kept, dict(workers.dirs), workers)
        return JobResult(report)

    def next_inputs(result: JobResult) -> list[Any]:
        parts, dirs, _ = kept[result.report.job_id]
        disks, state["locations"] = step_disks(result.report.job_id, parts)
        state["dirs"] = dirs
        return disks

    def remove(entry: dict[str, Any]) -> None:
        made = kept.pop(str(entry.get("id")), None)
        if made is not None:     # (a step that failed forgot its own directories as it closed)
            made[2].forget()

    try:
        return run_steps(job, resolved, run_step, out=out_dir, job_id=job_id, progress=progress, record=record,
                         echo=echo, next_inputs=next_inputs, remove=remove, steps=steps,
                         intermediate_out=lambda i, sid: (None, {"dask": client.scheduler.address}))
    finally:
        for _, _, workers in kept.values():   # steps run_steps did not see end (it raised first)
            workers.forget()


__all__ = ["run_dask_steps", "step_disks"]
