"""The Python API: run a job in local mode and read its result as (key, value) pairs.

    from geryon import Job
    result = Job(map=wordmap, reduce=total, combine=total).run(["examples/disks/d0.mbox"])
    for word, count in result: ...

Local mode runs on this machine's cores with the same engine a cluster uses.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from geryon.codec import parse_line
from geryon.cpu import LocalCpu
from geryon.disks import Disk, resolve
from geryon.engine import Driver, JobReport, Progress, new_job_id
from geryon.job import Job

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    """A finished job: its report, and its output as (key, value) pairs when iterated."""

    report: JobReport

    @property
    def parts(self) -> list[str]:
        return self.report.parts

    @property
    def counters(self) -> dict[str, dict[str, int]]:
        return self.report.counters

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        fmt = self.report.format
        for path in self.report.parts:
            with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
                for line in f:
                    yield parse_line(line, fmt)


def run_job(job: Job, disks: Sequence[str | Disk], out: str | None = None, workers: int | None = None,
            ndb: str | None = None, progress: Progress | None = None, workdir: str | None = None) -> JobResult:
    """Run `job` on this machine.

    Args:
        disks: directories, disk names from the ndb file, or Disk values.
        out: directory for the part files (default `./<job name>.out`).
        workers: worker processes (default: one per core).
        ndb: the ndb file naming disks.
    Raises:
        UnknownDisk, JobFailed, GeryonError.
    """
    resolved = [d if isinstance(d, Disk) else resolve(str(d), ndb) for d in disks]
    out_dir = out or os.path.join(os.getcwd(), f"{job.name}.out")
    job_id = new_job_id(job.name)
    cpu = LocalCpu(job_id, job, workers)
    try:
        report = Driver(job, [cpu], job_id, progress=progress, workdir=workdir).run(resolved, out_dir)
    finally:
        cpu.close()
    return JobResult(report)
