"""The words of a task attempt: its id, how it ended, and why it failed.

`AttemptId` is the one place an attempt's name (`m3.a1`: map 3, attempt 1) is written or
read. `AttemptState` is how an attempt ended in a job record; `FailureKind` (defined in
`geryon.errors`, beside the errors that carry one) why it failed (its values are the strings
job records and the node wire always carried, so old records still read). `classify(exc)` is the one rule from an exception to a `FailureKind`: our own
errors carry theirs as a `failure_kind` attribute, the rest is decided here. Not here:
what the driver does about a failure (`geryon.mapreduce.engine`, its policies), or the messages.
"""
from __future__ import annotations

import concurrent.futures as cf
import errno
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fs import errors as fserrors

from geryon.errors import FailureKind

log = logging.getLogger(__name__)

__all__ = ["AttemptId", "AttemptState", "FailureKind", "classify"]


class AttemptState(StrEnum):
    """How an attempt ended, as job records say it."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    LOST = "lost"
    IGNORED = "ignored"          # a late or duplicate result: another attempt is the one used
    KILLED = "killed"            # still running when its job ended


@dataclass(frozen=True, order=True)
class AttemptId:
    """One attempt of one task: `task` is `m<index>`, `r<index>` (or `s<index>`, a total-order
    job's sampling map), printed `m3.a1`."""

    task: str
    attempt: int

    def __str__(self) -> str:
        return f"{self.task}.a{self.attempt}"

    @property
    def is_map(self) -> bool:
        return self.task.startswith("m")

    @property
    def index(self) -> int:
        return int(self.task[1:])

    @classmethod
    def of(cls, kind: str, index: int, attempt: int) -> "AttemptId":
        """`kind` is "map"/"m" or "reduce"/"r"."""
        return cls(f"{'m' if kind in ('map', 'm') else 'r'}{index}", int(attempt))

    @classmethod
    def of_json(cls, task: dict[str, Any]) -> "AttemptId":
        """The id of a task as it travels (`MapTask.to_json`, `ReduceTask.to_json`); a sampling
        map (total order) is `s<index>`."""
        if task.get("kind") == "map" and task.get("sample"):
            return cls(f"s{int(task.get('index', 0))}", int(task.get("attempt", 0)))
        return cls.of(str(task.get("kind", "")), int(task.get("index", 0)), int(task.get("attempt", 0)))

    @classmethod
    def parse(cls, text: str) -> "AttemptId":
        """`m3.a1` -> AttemptId("m3", 1); a step's task of a multi-step job too: `s2.r0.a1` ->
        AttemptId("s2.r0", 1). Raises ValueError."""
        task, sep, attempt = text.rpartition(".a")
        step, dot, bare = task.partition(".")
        if not dot:
            bare = task
        elif step[:1] != "s" or not step[1:].isdigit():
            bare = ""
        if not sep or bare[:1] not in ("m", "r", "s") or not bare[1:].isdigit() or not attempt.isdigit():
            raise ValueError(f"not an attempt id: {text!r} (expected m<N>.a<N> or r<N>.a<N>)")
        return cls(task, int(attempt))


def classify(exc: BaseException, otherwise: FailureKind = FailureKind.USER) -> FailureKind:
    """The failure kind of an exception an attempt raised.

    `otherwise` is the kind of an exception none of the rules knows (a `GeryonError`
    without a kind of its own included): `USER` where the job's own code runs (a map or
    reduce raised), `SYSTEM` where only ours does (a worker starting, a task being sent).
    """
    kind = getattr(exc, "failure_kind", None)
    if isinstance(kind, FailureKind):
        return kind
    if isinstance(exc, MemoryError):
        return FailureKind.MEMORY
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return FailureKind.DISK_FULL
    if isinstance(exc, fserrors.RemoteConnectionError):   # a disk's node is gone, or silent
        return FailureKind.UNREACHABLE
    if isinstance(exc, fserrors.FSError):                  # a disk's node answered: the copy is bad
        return FailureKind.INPUT
    if isinstance(exc, (SyntaxError, ImportError)):        # the job's code does not load: same everywhere
        return FailureKind.USER
    if isinstance(exc, cf.CancelledError):                 # the attempt's connection was dropped
        return FailureKind.LOST
    return otherwise
