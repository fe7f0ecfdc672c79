"""Where a job runs, as the one driver (`geryon.mapreduce.engine.Driver`) asks about it: a `Policy`.

The driver's flow is the same everywhere; a policy answers what differs: how the splits
are planned (`plan`, the one planner of splits, is here), which failures another attempt
may cure, where a map's output is read from, whether a cpu can die and which node holds
what (locality), and how the parts are committed. `Policy` holds this machine's answers
where a cluster's differ, `LocalPolicy` adds the local disks and commit; the cluster's is
`geryon.mapreduce.clusterdriver.ClusterPolicy`. A new executor (its own `geryon.mapreduce.cpu.Cpu`) reuses one of
them or writes its own. Not here: scheduling, retries, records (`geryon.mapreduce.engine`).
"""
from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from geryon.mapreduce import memory, outdir
from geryon.mapreduce.attempt import FailureKind
from geryon.disks.chunk import TEMP_MARK
from geryon.mapreduce.cpu import Cpu
from geryon.disks.resolve import Disk
from geryon.errors import GeryonError, UnknownDisk
from geryon.mapreduce.job import DEFAULT_SPLIT_SIZE, Job
from geryon.records.readers import check_record_sizes, may_cut_files
from geryon.mapreduce.report import JobReport
from geryon.mapreduce.scratch import Scratch
from geryon.records.split import Split, list_files, list_local_files, only_under, plan_balanced, plan_splits, split_count_for
from geryon.mapreduce.task import MapTask, ReduceTask, TaskResult

if TYPE_CHECKING:
    from geryon.mapreduce.engine import Driver

log = logging.getLogger(__name__)


def plan(job: Job, disks: Sequence[Disk], slots: int = 1) -> list[tuple[Split, Disk]]:
    """Cut every input disk into splits, in disk order then file order.

    With no split size set on the job, the size adapts to the input and the slots
    (`split.split_size_for`); the plan never depends on timing, so output bytes do not.
    """
    listed = [(d, _chosen_files(d) if d.files else
               only_under(d.only, list_local_files(d.path) if d.path else list_files(d.fs))) for d in disks]
    if not job.map.streaming:  # a file read whole as one record must fit in the budget
        for d, files in listed:
            check_record_sizes(job.reader, d.name, files, job.sort_budget)
    # Only line records of uncompressed files may be cut into byte ranges (readers.may_cut).
    cuts = {id(d): may_cut_files(job.reader, [p for p, _ in files]) for d, files in listed}
    splits: list[tuple[Split, Disk]] = []
    if job.split_size is not None:
        for disk, files in listed:
            splits.extend((s, disk) for s in plan_splits(disk.name, files, job.split_size, cut_files=cuts[id(disk)]))
        return splits
    total = sum(n for _, files in listed for _, n in files)
    count = split_count_for(total, slots, DEFAULT_SPLIT_SIZE)
    size = max(1, -(-total // count))
    for disk, files in listed:
        disk_total = sum(n for _, n in files)
        if cuts[id(disk)] and any(n > size for _, n in files):
            # big files are cut into line-aligned ranges of the target size
            splits.extend((s, disk) for s in plan_splits(disk.name, files, size, cut_files=True))
        else:
            share = max(1, round(count * disk_total / total)) if total else 1
            splits.extend((s, disk) for s in plan_balanced(disk.name, files, share))
    return splits


def _chosen_files(disk: Disk) -> list[tuple[str, int]]:
    """The files a file or glob input named, with their sizes (`disks.resolve_inputs`)."""
    out = []
    for name in disk.files:
        try:
            out.append((name, disk.fs.getsize(name)))
        except Exception as exc:   # fs errors: gone since the job was asked for
            raise UnknownDisk(f"{disk.name}{name}: {exc}") from exc
    return out


class CpuLost(GeryonError):
    """Raised by a policy's `commit` when a cpu holding staged parts is gone: the driver
    declares it dead (its tasks run again elsewhere) and commits again."""

    def __init__(self, cpu: Cpu) -> None:
        super().__init__(cpu.name)
        self.cpu = cpu


class Policy:
    """What the driver asks about where it runs. These defaults are this machine's rules
    where a cluster's differ; `LocalPolicy` adds the local disks and commit."""

    retry_kinds: frozenset[FailureKind] = frozenset({FailureKind.SYSTEM, FailureKind.MEMORY})
    """Failures another attempt may cure (counted toward `max_attempts`). A full disk stays
    full on this machine; a cluster adds it, and lost attempts, since the next runs elsewhere."""
    requeue_kinds: frozenset[FailureKind] = frozenset()
    """Failures of a task's inputs, not of the task (a lost map output, a silent node): run
    again, counted apart (`EXTRA_FETCH_ROUNDS`)."""
    names_cpus = False            # failure messages name the attempt and its cpu
    max_cpu_failures: int | None = None   # failed attempts after which a cpu is excluded
    locality_wait = 0.0           # seconds a map waits for a cpu on a node holding its input

    def begin(self, driver: Driver, out_dir: str | None) -> str:
        """Before planning; the report's output directory."""
        return os.path.abspath(out_dir) if out_dir else ""

    def plan(self, driver: Driver, disks: Sequence[Any]) -> list[MapTask]:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """What the job record keeps besides the maps and cpus."""
        return {}

    def map_attempt(self, task: MapTask) -> MapTask:
        """The map task an attempt is given (a cluster puts its live copies first)."""
        return task

    def reduce_attempt(self, index: int, attempt: int, inputs: tuple[tuple[str, Any], ...]) -> ReduceTask:
        raise NotImplementedError

    def map_output(self, result: TaskResult, cpu: Cpu) -> str:
        """Where reducers read a map attempt's output."""
        return result.output

    def order(self, cpus: Sequence[Cpu], busy: dict[Cpu, int]) -> list[Cpu]:
        """The order free slots are offered work in this round."""
        return list(cpus)

    def home(self, cpu: Cpu) -> str:
        """The node a cpu runs on, as `homes` names nodes ("" for none)."""
        return ""

    def homes(self, task: MapTask) -> set[str]:
        """The nodes holding a map's input."""
        return set()

    def alive(self, cpu: Cpu) -> bool:
        """Does a cpu whose attempt was lost still answer?"""
        return True

    def owner(self, location: str, cpus: Sequence[Cpu]) -> Cpu | None:
        """The cpu whose node holds a map output a reducer could not read."""
        return None

    def attempt_ended(self, task: MapTask | None, result: TaskResult) -> None:
        """Told of every attempt's result (a cluster notes the input copies that failed)."""

    def more_copies(self, maps: list[MapTask], index: int) -> list[MapTask] | None:
        """Every copy a map's input knew failed: the maps with new copies to try, or None."""
        return None

    def commit(self, parts: list[tuple[TaskResult, Cpu]], report: JobReport) -> list[str]:
        """Put every reduce's staged part in place, all or none. May raise CpuLost."""
        raise NotImplementedError

    def end(self) -> None:
        """After the job, whatever happened: its temporary data removed."""


class LocalPolicy(Policy):
    """This machine: local disks, map outputs in a work directory, parts renamed into place."""

    def __init__(self, workdir: str | None = None) -> None:
        self.workdir_parent = workdir
        self._scratch: Scratch | None = None
        self.work = ""
        self.out_dir = ""
        self.staging = ""
        self.job_id = ""
        self.job_name = ""

    def begin(self, driver: Driver, out_dir: str | None) -> str:
        problem = memory.budget_problem(driver.job.sort_budget)
        if problem is not None:  # the task would be killed by the kernel, or (-j 1) the driver with it
            raise GeryonError(problem)
        if not out_dir:
            raise GeryonError("local mode needs an output directory")
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir = os.path.abspath(out_dir)
        self.job_id, self.job_name = driver.job_id, driver.job.name
        self.staging = f"{TEMP_MARK}{driver.job_id}"  # hidden in listings, removed on failure
        self._scratch = Scratch(f"geryon-{driver.job_id}-", self.workdir_parent)   # swept if we die
        self.work = self._scratch.path
        return self.out_dir

    def plan(self, driver: Driver, disks: Sequence[Disk]) -> list[MapTask]:
        missing = [d.name for d in disks if not d.path]
        if missing:
            raise GeryonError(f"{missing[0]}: only local disks can be read in local mode")
        planned = plan(driver.job, disks, sum(c.slots for c in driver.cpus))
        return [MapTask(i, 0, s, d.path or "", self.work, d.replicas) for i, (s, d) in enumerate(planned)]

    def reduce_attempt(self, index: int, attempt: int, inputs: tuple[tuple[str, Any], ...]) -> ReduceTask:
        return ReduceTask(index, attempt, inputs, self.out_dir, self.staging)

    def commit(self, parts: list[tuple[TaskResult, Cpu]], report: JobReport) -> list[str]:
        """Rename every part to `part-0000r`, then write `_SUCCESS` (`geryon.mapreduce.outdir`): every
        destination is checked first, so a name taken by a directory fails the job before
        any part is replaced."""
        return outdir.commit(self.out_dir, [os.path.join(self.out_dir, res.output) for res, _ in parts],
                             self.job_id, self.job_name)

    def end(self) -> None:
        if self._scratch is not None:
            self._scratch.close()
        if self.out_dir:
            shutil.rmtree(os.path.join(self.out_dir, self.staging), ignore_errors=True)
