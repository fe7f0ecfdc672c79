"""What a job driver reports: to whoever watches it (`Progress`) and when it ends (`JobReport`).

Not here: the driver (`geryon.mapreduce.engine`), the display (`geryon.cli.progress`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from geryon.mapreduce.task import TaskResult

log = logging.getLogger(__name__)


class Progress(Protocol):
    """What the driver tells whoever watches a job."""

    def phase(self, name: str, total: int, nbytes: int) -> None: ...

    def task_done(self, result: TaskResult) -> None: ...

    def message(self, text: str) -> None: ...


class Silent:
    """A `Progress` that tells nobody."""

    def phase(self, name: str, total: int, nbytes: int) -> None:
        pass

    def task_done(self, result: TaskResult) -> None:
        pass

    def message(self, text: str) -> None:
        pass


@dataclass
class PhaseStats:
    tasks: int = 0
    records_in: int = 0
    records_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    attempts: int = 0


@dataclass
class JobReport:
    """What a finished job did: its part files, counters and per-phase figures."""

    job_id: str
    name: str
    out_dir: str
    parts: list[str]
    format: str
    map: PhaseStats = field(default_factory=PhaseStats)
    reduce: PhaseStats = field(default_factory=PhaseStats)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    shuffled: int = 0  # bytes of map output read by reducers
    slowest: list[tuple[str, str, float]] = field(default_factory=list)  # (attempt, cpu, seconds)
    failed_attempts: int = 0
    urls: list[str] = field(default_factory=list)  # cluster: where the parts are on the nodes
    part_bytes: list[int] = field(default_factory=list)  # total order: the shuffled bytes each part read

    @property
    def balance(self) -> float:
        """A total-order job's largest part over the mean part, in shuffled bytes (0.0: not reported)."""
        total = sum(self.part_bytes)
        return max(self.part_bytes) * len(self.part_bytes) / total if total else 0.0
    steps: list["JobReport"] = field(default_factory=list)  # a multi-step job: each step's own report
