"""The geryon package's error root and its nouns.

Lower errors (OSError, NdbError, ...) are wrapped here with `raise ... from exc`; the CLI
turns any GeryonError into one line on stderr and exit status 1. `FailureKind` is why a
task attempt failed; an error that means one says so in its `failure_kind` attribute
(`geryon.mapreduce.attempt.classify` reads it).
"""
from __future__ import annotations

from enum import StrEnum


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
