"""The words of a task attempt: its id, how it ended, and why it failed.

`AttemptId` is the one place an attempt's name (`m3.a1`: map 3, attempt 1) is written or
read, and the functions below the one place a task's name (`m3`, `r0`, `s2`), a step's
(`s2.r0`, job id `JOB-s2`) and a reduce attempt's staged part (`wc.part0.a1`) are written. `AttemptState` is how an attempt ended in a job record; `FailureKind` (defined in
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

__all__ = ["AttemptId", "AttemptState", "FailureKind", "classify", "is_map_task", "staged_part_name",
           "step_job_id", "step_prefix", "step_task_name", "task_index", "task_name"]

_LETTER = {"map": "m", "m": "m", "reduce": "r", "r": "r", "sample": "s", "s": "s"}


def task_name(kind: str, index: int) -> str:
    """Task `index` of `kind` ("map"/"m", "reduce"/"r", "sample"/"s": a total-order job's
    sampling map): `m3`, `r0`, `s2`."""
    letter = _LETTER.get(kind)
    if letter is None:
        raise ValueError(f"not a task kind: {kind!r} (map, reduce or sample)")
    return f"{letter}{int(index)}"


def is_map_task(name: str) -> bool:
    """Whether a task's name (`task_name`) is a map's."""
    return name.startswith("m")


def task_index(name: str) -> int:
    """The index in a task's name: `r3` -> 3."""
    return int(name[1:])


def step_prefix(step: int) -> str:
    """What a multi-step job's step (from 1) puts before its tasks' names and events: `s2.`."""
    return f"s{int(step)}."


def step_task_name(step: int, name: str) -> str:
    """A task of step `step` as the job's record names it: `s2.r0` (`geryon logs JOB s2.r0`)."""
    return step_prefix(step) + name


def step_job_id(job_id: str, step: int) -> str:
    """The id a multi-step job's step (not its last) runs under: `JOB-s2`."""
    return f"{job_id}-s{int(step)}"


def staged_part_name(job_name: str, index: int, attempt: int) -> str:
    """A reduce attempt's part before the job commits it: `wc.part0.a1` (the node's
    `geryon.node.jobservice` accepts only this shape)."""
    return f"{job_name}.part{int(index)}.a{int(attempt)}"


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
        return is_map_task(self.task)

    @property
    def index(self) -> int:
        return task_index(self.task)

    @classmethod
    def of(cls, kind: str, index: int, attempt: int) -> "AttemptId":
        """`kind` is "map"/"m" or "reduce"/"r"."""
        return cls(task_name("map" if kind in ("map", "m") else "reduce", index), int(attempt))

    @classmethod
    def of_json(cls, task: dict[str, Any]) -> "AttemptId":
        """The id of a task as it travels (`MapTask.to_json`, `ReduceTask.to_json`); a sampling
        map (total order) is `s<index>`."""
        if task.get("kind") == "map" and task.get("sample"):
            return cls(task_name("sample", int(task.get("index", 0))), int(task.get("attempt", 0)))
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
