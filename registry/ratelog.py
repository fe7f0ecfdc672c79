"""`RateLog`: at most one log line per key (a client address) per interval, with a count.

A server that logs every refusal lets any client without the secret fill its disk: 5,000
aborted bodies were 6.4 MB of tracebacks. Callers ask `RateLog.allow(key, now)` before
logging; the first event for a key in an interval is logged with the number of events
suppressed since the last line, the rest are counted. A budget of lines per interval
across all keys bounds an attack from many addresses too. Time is a parameter, so the
rules are tested without sleeping. Not here: what is logged or at which level (callers).
"""
from __future__ import annotations

import logging
from collections import OrderedDict

log = logging.getLogger(__name__)

DEFAULT_LOG_INTERVAL = 60.0
"""Seconds between two log lines about the same client."""

DEFAULT_LOG_BURST = 20
"""Log lines allowed per interval across all clients; more are counted, not written."""

DEFAULT_LOG_KEYS = 4096
"""Clients remembered at once (the oldest is forgotten first): bounds the memory an attack costs."""


class RateLog:
    """Decides which events are logged: one per key per interval, `burst` per interval in all.

    Args:
        interval: seconds between two lines about one key.
        burst: lines per interval across all keys.
        max_keys: keys remembered at once.
    """

    def __init__(self, interval: float = DEFAULT_LOG_INTERVAL, burst: int = DEFAULT_LOG_BURST,
                 max_keys: int = DEFAULT_LOG_KEYS) -> None:
        self.interval = interval
        self.burst = burst
        self.max_keys = max_keys
        self._last: OrderedDict[str, float] = OrderedDict()     # key -> when it was last logged
        self._suppressed: dict[str, int] = {}
        self._window = float("-inf")                          # start of the current burst window
        self._lines = 0
        self._dropped = 0                                     # suppressed by the burst budget

    def allow(self, key: str, now: float) -> int | None:
        """None: do not log this event. Else log it, saying this many like it were not logged."""
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        if now - self._window >= self.interval:
            self._window, self._lines = now, 0
        if self._lines >= self.burst:
            self._dropped += 1
            return None
        self._lines += 1
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self.max_keys:
            old, _ = self._last.popitem(last=False)
            self._dropped += self._suppressed.pop(old, 0)
        count = self._suppressed.pop(key, 0) + self._dropped
        self._dropped = 0
        return count


def suppressed_note(count: int) -> str:
    """`''`, or ` (N more like it not logged)` to append to a line."""
    return f" ({count} more like it not logged)" if count else ""


__all__ = ["DEFAULT_LOG_BURST", "DEFAULT_LOG_INTERVAL", "DEFAULT_LOG_KEYS", "RateLog", "suppressed_note"]
