"""Backoff: jittered exponential delays between reconnection attempts.

Pure: the random source is a parameter; sleeping is the caller's business.
"""
from __future__ import annotations

import logging
import random

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_BASE = 0.1
"""First delay before reconnecting, in seconds (doubles each failure)."""

DEFAULT_BACKOFF_CAP = 2.0
"""Longest delay between reconnection attempts, in seconds."""


class Backoff:
    """Delays `base`, `2*base`, ... capped at `cap`, each scaled by a jitter in [0.5, 1]."""

    def __init__(self, base: float = DEFAULT_BACKOFF_BASE, cap: float = DEFAULT_BACKOFF_CAP,
                 rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()
        self._failures = 0

    def next(self) -> float:
        """The delay before the next attempt; each call counts one failure."""
        delay: float = min(self.cap, self.base * (2.0 ** min(self._failures, 32)))
        self._failures += 1
        jitter: float = self._rng.uniform(0.5, 1.0)
        return delay * jitter

    def reset(self) -> None:
        """Start again from `base` (after a success)."""
        self._failures = 0
