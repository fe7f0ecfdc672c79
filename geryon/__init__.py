"""Geryon: MapReduce for small clusters."""
from __future__ import annotations

from typing import Any

from geryon.mapreduce.api import JobResult, run_job
from geryon.mapreduce.counters import increment_counter, set_status
from geryon.errors import DiskFull, GeryonError, JobDefinitionError, JobFailed, UnknownDisk
from geryon.mapreduce.job import Job, MRStep, Steps
from geryon.mapreduce.jobparams import param, params
from geryon.taskfs.client import session

__all__ = [
    "DiskFull", "GeryonError", "Job", "JobDefinitionError", "JobFailed", "JobResult", "MRStep", "Steps", "UnknownDisk",
    "disk", "increment_counter", "param", "params", "rcpu", "run_job", "session", "set_status",
]


def __getattr__(name: str) -> Any:
    # The cluster's functions load aiohttp: only when first used, so that local jobs and
    # the command line start quickly.
    if name == "disk":
        from geryon.disks.opendisk import open_disk

        return open_disk
    if name == "rcpu":
        from geryon.cluster.rcpu import rcpu

        return rcpu
    raise AttributeError(f"module 'geryon' has no attribute {name!r}")
