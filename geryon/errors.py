"""The geryon package's error root and its nouns.

Lower errors (OSError, NdbError, ...) are wrapped here with `raise ... from exc`; the CLI
turns any GeryonError into one line on stderr and exit status 1.
"""
from __future__ import annotations

from geryon.attempt import FailureKind


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
