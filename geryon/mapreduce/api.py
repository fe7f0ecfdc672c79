"""The Python API: run a job locally or on a cluster and read its result as (key, value) pairs.

    from geryon import Job
    result = Job(map=wordmap, reduce=total, combine=total).run(["examples/disks/d0.mbox"])
    for word, count in result: ...

Local mode runs on this machine's cores with the same engine a cluster uses; with a
registry (a `registry.client.RegistryClient`), the job runs on the registry's cpus
(`geryon.mapreduce.clusterdriver`) and gives the same bytes.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from geryon.mapreduce.cpu import LocalCpu
from geryon.disks.resolve import Disk, resolve_inputs
from geryon.mapreduce.engine import Driver, Progress, new_job_id
from geryon.mapreduce.job import Job, set_runner
from geryon.mapreduce.scratch import sweep
from geryon.mapreduce.runs import JobResult, _to_stderr, _with_reader, check_outside_inputs

log = logging.getLogger(__name__)


def run_job(job: Job, disks: Sequence[str | Disk], out: str | None = None, workers: int | None = None,
            ndb: str | None = None, progress: Progress | None = None, workdir: str | None = None,
            record: Any = None, job_id: str | None = None, echo: Any = None) -> JobResult:
    """Run `job` on this machine.

    Args:
        disks: directories, disk names from the ndb file, or Disk values.
        out: directory for the part files (default `./<job name>.out`): `part-00000` ... and
            `_SUCCESS`; never inside an input disk.
        workers: worker processes (default: one per core).
        ndb: the ndb file naming disks.
        job_id: the job's id (default: a new one from its name).
        echo: called with each line the job's code printed, prefixed with its attempt's id
            (default: written to sys.stderr).
    Raises:
        UnknownDisk, JobFailed, GeryonError.
    """
    sweep(workdir)   # what local drivers that died left in the work directory
    if job.multi_step:
        from geryon.mapreduce.steps import run_local_steps

        return run_local_steps(job, disks, run_job, out=out, workers=workers, ndb=ndb, progress=progress, workdir=workdir,
                               record=record, job_id=job_id, echo=echo if echo is not None else _to_stderr)
    resolved = [d for arg in disks for d in ([arg] if isinstance(arg, Disk) else resolve_inputs([str(arg)], ndb))]
    job = _with_reader(job, [(d.name, d.format) for d in resolved])
    out_dir = os.path.abspath(out or os.path.join(os.getcwd(), f"{job.name}.out"))
    check_outside_inputs(resolved, out_dir, workdir)
    job_id = job_id or new_job_id(job.name)
    cpu = LocalCpu(job_id, job, workers)
    try:
        report = Driver(job, [cpu], job_id, progress=progress, workdir=workdir, record=record,
                        echo=echo if echo is not None else _to_stderr).run(resolved, out_dir)
    finally:
        cpu.close()
    return JobResult(report)


def run_by_rule(job: Job, disks: Sequence[Any], *, out: str | None = None, workers: int | None = None,
                ndb: str | None = None, progress: Progress | None = None, workdir: str | None = None,
                registry: Any = None, secret: bytes | None = None, local: bool = False,
                dask: Any = None) -> JobResult:
    """`Job.run`: locally or on a cluster, by the local-or-cluster rule (`geryon.cluster.where`);
    with `dask` (a `distributed.Client` or a scheduler address), on that Dask cluster.

    Raises:
        UnknownDisk, JobFailed, GeryonError.
    """
    from geryon.errors import UnknownDisk

    if dask is not None and not local:
        from geryon.mapreduce.daskcpu import run_dask_job

        return run_dask_job(job, disks, dask, out=out, ndb=ndb, progress=progress)
    if not local and registry is None:
        from geryon.cluster.where import api_where

        elsewhere = None
        for d in disks:
            if isinstance(d, Disk):
                continue
            if str(d).startswith("geryon://"):
                elsewhere = f"{d} is on a cluster node"
                break
            try:
                for disk in resolve_inputs([str(d)], ndb):
                    disk.fs.close()
            except UnknownDisk as exc:
                elsewhere = str(exc)
                break
        where, secret = api_where(False, secret, os.environ, names_data=True, elsewhere=elsewhere)
        registry = where.registry
    if local or registry is None:
        return run_job(job, disks, out=out, workers=workers, ndb=ndb, progress=progress, workdir=workdir)
    if isinstance(registry, str):
        from registry.client import RegistryClient

        with RegistryClient(registry, secret=secret, owner="api") as client:
            return run_cluster_job(job, [str(d) for d in disks], client, secret, out=out, progress=progress)
    return run_cluster_job(job, [str(d) for d in disks], registry, secret, out=out, progress=progress)


set_runner(run_by_rule)


def run_cluster_job(job: Job, disks: Sequence[str], registry: Any, secret: bytes | None, *,
                    out: str | None = None, progress: Progress | None = None, record: Any = None,
                    lease: float | None = None, echo: Any = None, job_id: str | None = None,
                    pick: str = "rr", pack: Any = None, step: int = 0) -> JobResult:
    """Run `job` on the cpus of a cluster.

    Args:
        disks: disk names the registry knows (from the cluster's ndb file) or geryon:// URLs.
        registry: a RegistryClient.
        secret: the cluster secret.
        out: a local directory to copy the part files to (None: leave them on the nodes).
        record: a `geryon.mapreduce.jobstore.JobRecord`, or None.
        lease: seconds a silent node keeps its attempts.
        echo: called with each line of task stderr (prefixed with the attempt's id).
        pick: "rr" (round robin) or "load" (least busy cpu first), after locality.
        pack, step: a multi-step job's one pack (`jobpack.build` of its steps), and which step
            (from 0) `job` is (`geryon.mapreduce.steps`); default: a pack of `job`.
    Raises:
        UnknownDisk, JobFailed, GeryonError.
    """
    from geryon.mapreduce.clusterdriver import DEFAULT_LEASE, ClusterDriver
    from geryon.cluster.members import find_cluster, find_disk, find_output_disks

    if job.multi_step:
        from geryon.mapreduce.steps import run_cluster_steps

        return run_cluster_steps(job, disks, registry, secret, run_cluster_job, out=out, progress=progress, record=record,
                                 lease=lease, echo=echo, job_id=job_id, pick=pick)

    found, cpus = find_cluster([str(d) for d in disks], registry)
    job = _with_reader(job, [(d.name, d.format) for d in found])
    driver = ClusterDriver(job, cpus, job_id or new_job_id(job.name), secret, progress=progress, record=record,
                           lease=lease or DEFAULT_LEASE, echo=echo, pick=pick, pack=pack, step=step,
                           out_disks=find_output_disks(registry),
                           refind=lambda name: find_disk(name, registry))
    result = JobResult(driver.run(found, out))
    result.secret = secret
    return result
