"""The garbage collector's thresholds while a task runs: young collections rare, so that building
millions of small containers (a sort buffer's lists of values, the lists a reduce decodes) does not
pay for a traversal of everything alive every few thousand allocations.

CPython collects its youngest generation every 700 new containers and the older ones after 10
of those; a map task that groups a million keys into lists spent about a fifth of its CPU there
(measured: 12.9-14.7 CPU s with the default thresholds, 10.6-11.0 with these, on half of the
docs100 inverted index; bench/README.md). The engine's own structures hold no reference cycles
(refcounting frees them); the collector still runs, every `TASK_THRESHOLD[0]` allocations, so a
user's cyclic garbage is still reclaimed during the task. Nothing here disables the collector.
"""
from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

TASK_THRESHOLD = (100_000, 50, 100)
"""`gc.set_threshold` while a task runs: the youngest generation is collected every 100,000 new
containers (CPython's default: 700), the middle one every 50 of those, the oldest every 100 of those."""

F = TypeVar("F", bound=Callable[..., Any])


def collecting_rarely(func: F) -> F:
    """Run `func` with the collector's `TASK_THRESHOLD`, and the caller's thresholds again after."""
    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        saved = gc.get_threshold()
        gc.set_threshold(*TASK_THRESHOLD)
        try:
            return func(*args, **kwargs)
        finally:
            gc.set_threshold(*saved)
    return run  # type: ignore[return-value]
