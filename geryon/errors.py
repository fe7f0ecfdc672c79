"""The geryon package's error root and its nouns.

Lower errors (OSError, NdbError, ...) are wrapped here with `raise ... from exc`; the CLI
turns any GeryonError into one line on stderr and exit status 1. `FailureKind` is why a
task attempt failed; an error that means one says so in its `failure_kind` attribute
(`geryon.mapreduce.attempt.classify` reads it).

The whole tree is reachable from here: `from geryon.errors import ValueTooBig` works for every
error of the package. The roots and the errors every layer raises are defined in this module;
the others are defined beside the code that raises them (a layer above this one) and listed in
`ELSEWHERE`, loaded from there on first use, so this module imports nothing of ours.
`tests/test_errors_tree.py` checks that every exception class of geryon is a `GeryonError`
(one listed exception: `OutsideDisk`, an `fs` error by PyFilesystem's contract) and is here.
"""
from __future__ import annotations

import importlib
from enum import StrEnum
from typing import Any


class FailureKind(StrEnum):
    """Why an attempt failed; the driver's retry rules are written over these."""

    USER = "user"                # the job's own code or data: deterministic, never retried
    DISK_FULL = "disk_full"      # no room for the attempt's output (another cpu may have some)
    INPUT = "input"              # the input copy could not be read as data (damaged): a replica may be good
    UNREACHABLE = "unreachable"  # no node serving the input answered
    SYSTEM = "system"            # the worker died, or a bug of ours
    FETCH = "fetch"              # a reducer could not read a map output
    LOST = "lost"                # the attempt's node died or missed its lease
    MEMORY = "memory"            # killed by the kernel for memory, or MemoryError


class GeryonError(Exception):
    """Something Geryon was asked to do could not be done."""


class DiskFull(GeryonError):
    """A write would take a chunk disk past its capacity."""

    failure_kind = FailureKind.DISK_FULL


class UnknownDisk(GeryonError):
    """A disk name is neither a path nor a name in the ndb file."""


class JobFailed(GeryonError):
    """A MapReduce job failed; nothing was committed."""


class JobDefinitionError(GeryonError):
    """A job's map/reduce script is missing or does not define what it must."""

    failure_kind = FailureKind.USER   # the same on every node: the job fails at once


ELSEWHERE: dict[str, tuple[str, ...]] = {
    "geryon.net.connection": ("NodeUnavailable",),
    "geryon.records.badrecords": ("InputError", "BadRecord", "TooManyBadRecords"),
    "geryon.records.untar": ("UnpackRefused",),
    "geryon.disks.chunk": ("OutsideDisk",),
    "geryon.disks.checksum": ("ChecksumMismatch",),
    "geryon.disks.filebatch": ("BatchError",),
    "geryon.disks.placement": ("NoRoom",),
    "geryon.disks.replicate": ("ReplicaError", "MasterChanged"),
    "geryon.disks.sumsjournal": ("JournalRefused",),
    "geryon.cluster.members": ("DiskNotLive",),
    "geryon.cluster.pick": ("NoCpu",),
    "geryon.cluster.rcpu": ("CommandRefused",),
    "geryon.ingest.packer": ("RecordTooLarge",),
    "geryon.ingest.upload": ("UploadFailed",),
    "geryon.mapreduce.codec": ("RecordError",),
    "geryon.mapreduce.daskcpu": ("WorkerLost",),
    "geryon.mapreduce.daskworker": ("StepInputLost",),
    "geryon.mapreduce.forkpool": ("WorkerDied",),
    "geryon.mapreduce.jobfiles": ("JobFilesError",),
    "geryon.mapreduce.jobnodes": ("NodeError",),
    "geryon.mapreduce.jobpack": ("JobPackError",),
    "geryon.mapreduce.partition": ("PartitionError",),
    "geryon.mapreduce.policy": ("CpuLost",),
    "geryon.mapreduce.reducetask": ("FetchFailed",),
    "geryon.mapreduce.sortbuffer": ("CombineError", "ValueTooBig"),
    "geryon.mapreduce.streaming": ("CommandFailed",),
    "geryon.taskfs.wire": ("SessionError", "NoResources", "ProtocolError"),
    "geryon.node.chunkops": ("PathEscapes", "PullMismatch"),
    "geryon.node.runmounts": ("RunRefused",),
    "geryon.ui.access": ("AccessRefused",),
}
"""Module -> the errors defined there, by layer (wire, data, cluster, jobs, servers, dashboard)."""

_HOME = {name: module for module, names in ELSEWHERE.items() for name in names}

__all__ = ["FailureKind", "GeryonError", "DiskFull", "UnknownDisk", "JobFailed", "JobDefinitionError",
           *sorted(_HOME)]


def __getattr__(name: str) -> Any:
    """An error defined elsewhere in geryon, from its module (imported now if it was not)."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
