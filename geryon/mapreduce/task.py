"""Task descriptions and results: plain JSON-able values that travel to and from cpus.

A map task names its split and where its disk lives; a reduce task names its partition
and the segments of every map output it must read. Results carry the committed output,
record counts, counters and, on failure, a message fit for a person.
"""
from __future__ import annotations

import base64
import traceback
from dataclasses import dataclass, field
from typing import Any

from geryon.mapreduce.attempt import AttemptId, task_name
from geryon.mapreduce.codec import pack_block, unpack_blocks
from geryon.mapreduce.segments import Segment
from geryon.records.split import FileRange, Split

TRACEBACK_LINES = 8
"""Lines of a Python traceback kept in a failure message."""


def data_prefix(node_url: str, job_id: str) -> str:
    """The URL prefix under which a node serves a job's map outputs (`geryon.node.jobservice`'s
    `/v1/jobs/{job}/data/{name}`): where a map task's output is, for the reducers."""
    return f"{node_url}/v1/jobs/{job_id}/data/"


@dataclass(frozen=True)
class MapTask:
    index: int
    attempt: int
    split: Split
    root: str  # where the input disk lives: a local directory, or a geryon:// URL (cluster)
    workdir: str  # where the map output is written
    alternates: tuple[str, ...] = ()  # replicas of the input disk, tried in order when `root` fails
    # total order (`geryon.mapreduce.totalorder`): a sampling task keeps at most `sample` of
    # its map output's keys and writes nothing (`s<i>`); a map partitions by `bounds`
    sample: int = 0
    bounds: tuple | None = None

    @property
    def id(self) -> str:
        return task_name("sample" if self.sample else "map", self.index)

    @property
    def attempt_id(self) -> AttemptId:
        return AttemptId(self.id, self.attempt)

    def to_json(self) -> dict:
        d = {"kind": "map", "index": self.index, "attempt": self.attempt, "disk": self.split.disk,
             "ranges": [r.to_json() for r in self.split.ranges], "root": self.root, "workdir": self.workdir,
             "alternates": list(self.alternates)}
        if self.sample:
            d["sample"] = self.sample
        if self.bounds is not None:
            d["bounds"] = pack_keys(self.bounds)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "MapTask":
        split = Split(d["disk"], tuple(FileRange.from_json(r) for r in d["ranges"]))
        bounds = d.get("bounds")
        return cls(int(d["index"]), int(d["attempt"]), split, d["root"], d["workdir"],
                   tuple(str(a) for a in d.get("alternates", ())), int(d.get("sample") or 0),
                   None if bounds is None else tuple(unpack_keys(bounds)))


@dataclass(frozen=True)
class ReduceTask:
    index: int
    attempt: int
    inputs: tuple[tuple[str, Segment], ...]  # (map output location, segment r)
    out_root: str
    staging: str  # directory (relative to out_root) holding attempts until the job commits

    @property
    def id(self) -> str:
        return task_name("reduce", self.index)

    @property
    def attempt_id(self) -> AttemptId:
        return AttemptId(self.id, self.attempt)

    def to_json(self) -> dict:
        return {"kind": "reduce", "index": self.index, "attempt": self.attempt,
                "inputs": [[loc, s.to_json()] for loc, s in self.inputs],
                "out_root": self.out_root, "staging": self.staging}

    @classmethod
    def from_json(cls, d: dict) -> "ReduceTask":
        inputs = tuple((loc, Segment.from_json(s)) for loc, s in d["inputs"])
        return cls(int(d["index"]), int(d["attempt"]), inputs, d["out_root"], d["staging"])


@dataclass
class TaskResult:
    """What a task attempt reports back."""

    task: str
    attempt: int
    ok: bool
    output: str = ""
    segments: list[Segment] = field(default_factory=list)
    records_in: int = 0
    records_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""
    error_kind: str = ""  # a `geryon.mapreduce.attempt.FailureKind` value ("" when ok)
    detail: str = ""  # traceback or stderr tail
    lost_input: str = ""  # "fetch" failures: the map output that could not be read
    unreadable: list[str] = field(default_factory=list)  # maps: input copies that failed (then a replica was read)
    log: str = ""  # local mode: what the user's code printed (stdout and stderr) during the attempt
    peak_rss: int = 0  # the attempt's peak resident memory in bytes (0: not measured)
    sample: list = field(default_factory=list)  # a sampling task's keys (`MapTask.sample`)

    @property
    def attempt_id(self) -> AttemptId:
        return AttemptId(self.task, self.attempt)

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in _RESULT_FIELDS}
        d["segments"] = [s.to_json() for s in self.segments]
        if self.sample:
            d["sample"] = pack_keys(self.sample)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "TaskResult":
        fields = {k: d[k] for k in _RESULT_FIELDS if k in d}
        sample = unpack_keys(d["sample"]) if d.get("sample") else []
        return cls(segments=[Segment.from_json(s) for s in d.get("segments", ())], sample=sample, **fields)


_RESULT_FIELDS = ("task", "attempt", "ok", "output", "records_in", "records_out", "bytes_in", "bytes_out",
                  "counters", "seconds", "error", "error_kind", "detail", "lost_input",
                  "unreadable", "peak_rss")


def pack_keys(keys: Any) -> str:
    """Keys (any the engine carries: bytes too) as a JSON-able string: base64 of msgpack."""
    return base64.b64encode(pack_block(True, list(keys), [])).decode("ascii")


def unpack_keys(text: str) -> list:
    """The keys `pack_keys` packed. Raises ValueError on anything else."""
    try:
        for _, keys, _ in unpack_blocks(base64.b64decode(text.encode("ascii"), validate=True)):
            return list(keys)
    except Exception as exc:   # binascii, msgpack and shape errors alike: not keys we packed
        raise ValueError(f"bad packed keys: {exc}") from None
    return []


def traceback_tail(exc: BaseException, lines: int = TRACEBACK_LINES) -> str:
    """The last lines of an exception's traceback, user frames first in mind."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    kept = text.rstrip("\n").split("\n")[-lines:]
    return "\n".join(kept)


def describe_key(key: Any, limit: int = 60) -> str:
    text = repr(key)
    return text if len(text) <= limit else text[: limit - 3] + "..."
