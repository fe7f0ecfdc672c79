"""Geryon: MapReduce for small clusters."""
from __future__ import annotations

from geryon.errors import DiskFull, GeryonError, JobDefinitionError, JobFailed, UnknownDisk

__all__ = ["DiskFull", "GeryonError", "JobDefinitionError", "JobFailed", "UnknownDisk"]
