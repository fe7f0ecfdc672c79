"""Job counters: named numbers a task adds to, summed over the job (Hadoop's counters).

Python jobs call `geryon.increment_counter(group, name, amount)`; streaming jobs write
`reporter:counter:GROUP,NAME,AMOUNT` lines on stderr. Each task starts with empty counters
and returns them with its result; the driver sums them.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

_current: dict[str, dict[str, int]] = {}
_status: list[str] = []


def increment_counter(group: str, name: str, amount: int = 1) -> None:
    """Add `amount` to counter `group`/`name` of the running task."""
    g = _current.setdefault(str(group), {})
    g[str(name)] = g.get(str(name), 0) + int(amount)


def set_status(message: str) -> None:
    """Set the running task's status line (Hadoop's reporter:status)."""
    _status[:] = [str(message)]


def reset() -> None:
    _current.clear()
    _status.clear()


def snapshot() -> dict[str, dict[str, int]]:
    return {g: dict(c) for g, c in _current.items()}


def merge(total: dict[str, dict[str, int]], parts: Iterable[Mapping[str, Mapping[str, int]]]) -> dict[str, dict[str, int]]:
    """Add counter sets into `total` and return it."""
    for part in parts:
        for g, c in part.items():
            tg = total.setdefault(g, {})
            for n, v in c.items():
                tg[n] = tg.get(n, 0) + v
    return total


def parse_reporter_line(line: str) -> bool:
    """Apply one Hadoop Streaming `reporter:` stderr line; False if it is not one."""
    if line.startswith("reporter:counter:"):
        fields = line[len("reporter:counter:"):].strip().split(",")
        if len(fields) == 3:
            try:
                increment_counter(fields[0], fields[1], int(fields[2]))
                return True
            except ValueError:
                return False
        return False
    if line.startswith("reporter:status:"):
        set_status(line[len("reporter:status:"):].strip())
        return True
    return False
