"""What every way of running a job shares: its result as (key, value) pairs, the reader its
disks recorded, the rule that the output is never inside an input, and where job code's lines go.

Used by `geryon.mapreduce.api` (local and cluster runs) and `geryon.mapreduce.daskcpu` (Dask),
so that neither imports the other. Not here: running anything (the driver, `geryon.mapreduce.engine`).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from geryon.disks.resolve import Disk
from geryon.mapreduce.codec import parse_line
from geryon.mapreduce.job import Job
from geryon.mapreduce.report import JobReport

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
            with _open_part(path, self.secret) as f:
                for line in f:
                    yield parse_line(line, fmt)

    secret: bytes | None = None


def _open_part(where: str, secret: bytes | None) -> Any:
    """A part file, local or on a node (`geryon://host:port/chunk/name`), as text."""
    import io

    if where.startswith("geryon://"):
        from geryon.disks.remote import RemoteFS
        from registry.tls import base_url

        authority, _, rest = where[len("geryon://"):].partition("/")
        chunk, _, name = rest.partition("/")
        fs = RemoteFS(base_url(authority), chunk, secret)
        data = fs.readbytes(name)
        fs.close()
        return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape", newline="\n")
    return open(where, encoding="utf-8", errors="surrogateescape", newline="\n")


def _with_reader(job: Job, formats: Sequence[tuple[str, str]]) -> Job:
    """The job reading its disks' recorded record format, unless it names its own reader."""
    import dataclasses

    from geryon.mapreduce.job import disks_reader

    reader = disks_reader(job.reader, formats)
    return job if reader == job.reader else dataclasses.replace(job, reader=reader)


def _to_stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr)


def check_outside_inputs(disks: Sequence[Disk], out_dir: str, workdir: str | None = None) -> None:
    """Refuse an output (or work) directory inside an input disk: a job never writes into its
    input (the next run would read the output as input).

    Raises:
        GeryonError: one line naming the disk.
    """
    from geryon.errors import GeryonError
    from geryon.disks.outputs import inside

    for d in disks:
        for paths in (d.path, *d.replicas):
            if not paths or d.files:    # files named one by one: the directory is not the input
                continue
            if inside(out_dir, paths):
                raise GeryonError(f"output directory {out_dir} is inside input disk {d.name} ({paths}): "
                                  f"a job never writes into its input; choose another --out")
            if workdir and inside(os.path.abspath(workdir), paths):
                raise GeryonError(f"work directory {workdir} is inside input disk {d.name} ({paths}); "
                                  f"choose another --workdir")
