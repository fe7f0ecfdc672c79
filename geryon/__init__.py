"""Geryon: MapReduce for small clusters."""
from __future__ import annotations

from geryon.api import JobResult, run_job
from geryon.counters import increment_counter, set_status
from geryon.errors import DiskFull, GeryonError, JobDefinitionError, JobFailed, UnknownDisk
from geryon.job import Job

__all__ = [
    "DiskFull", "GeryonError", "Job", "JobDefinitionError", "JobFailed", "JobResult", "UnknownDisk",
    "increment_counter", "run_job", "set_status",
]
