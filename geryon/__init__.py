"""Geryon: MapReduce for small clusters."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geryon.errors import DiskFull, GeryonError, JobDefinitionError, JobFailed, UnknownDisk
    from geryon.mapreduce.api import JobResult, run_job
    from geryon.mapreduce.counters import increment_counter, set_status
    from geryon.mapreduce.job import Job, MRStep, Steps
    from geryon.mapreduce.jobparams import param, params
    from geryon.taskfs.client import session

__all__ = [
    "DiskFull", "GeryonError", "Job", "JobDefinitionError", "JobFailed", "JobResult", "MRStep", "Steps", "UnknownDisk",
    "disk", "increment_counter", "param", "params", "rcpu", "run_job", "session", "set_status",
]

_LAZY = {
    "DiskFull": "geryon.errors", "GeryonError": "geryon.errors", "JobDefinitionError": "geryon.errors",
    "JobFailed": "geryon.errors", "UnknownDisk": "geryon.errors",
    "JobResult": "geryon.mapreduce.api", "run_job": "geryon.mapreduce.api",
    "increment_counter": "geryon.mapreduce.counters", "set_status": "geryon.mapreduce.counters",
    "Job": "geryon.mapreduce.job", "MRStep": "geryon.mapreduce.job", "Steps": "geryon.mapreduce.job",
    "param": "geryon.mapreduce.jobparams", "params": "geryon.mapreduce.jobparams",
    "session": "geryon.taskfs.client",
    "disk": ("geryon.disks.opendisk", "open_disk"), "rcpu": ("geryon.cluster.rcpu", "rcpu"),
}
"""Where each public name lives: imported on first use, so that a command (`geryon load`, a node)
starts without the engine, aiohttp or the task file system it does not use."""


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'geryon' has no attribute {name!r}")
    module, attr = where if isinstance(where, tuple) else (where, name)
    value = getattr(importlib.import_module(module), attr)
    if name not in ("disk", "rcpu"):
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
