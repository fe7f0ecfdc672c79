"""Committed job outputs a driver holds: a multi-step job's intermediate steps (`JOB-s<i>/`), kept
while their driver lives.

A multi-step job's driver holds each intermediate step's id on every node (the WebSocket
`GET /v1/jobs/{job}/hold-output`, reopened if it drops) from before the step runs until the job
has read and removed that output. When the last such hold on an id closes and none opens again
within `grace` seconds, the node removes the id's committed output: the driver was killed
between steps (a driver that is done removes the output itself, `DELETE /v1/jobs/{job}/output`).
Each held id is also written down in `state_dir`, so a node restarted meanwhile (the driver may
be gone, its hold lost with the node) gives the held ids the same grace, and removes those no
driver comes back for. Not here: the routes and what removing means (`geryon.node.jobservice`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable

from geryon.defaults import DEFAULT_STEP_OUTPUT_GRACE

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,200}\Z")


class HeldOutputs:
    """The held job ids of one node, their holds counted, their removal timed.

    Args:
        state_dir: where each held id is written down (a file per id).
        remove: removes an id's committed output (and what else the job left) on this node.
        grace: seconds between the last hold closing and the removal.
    """

    def __init__(self, state_dir: str, remove: Callable[[str], Awaitable[object]],
                 grace: float = DEFAULT_STEP_OUTPUT_GRACE) -> None:
        self.state_dir, self.remove, self.grace = state_dir, remove, grace
        os.makedirs(state_dir, exist_ok=True)
        self.holds: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False

    def start(self) -> None:
        """Give every id a previous life of this node held the grace (call on the node's loop)."""
        if self._started:
            return
        self._started = True
        for job in sorted(os.listdir(self.state_dir)):
            if _SAFE.match(job) and job not in self.holds:
                log.info("%s was held when this node stopped: removed in %.0f s unless its driver holds it again",
                         job, self.grace)
                self._expire_later(job)

    def opened(self, job: str) -> None:
        """A driver holds `job`'s output."""
        self.start()
        self.holds[job] = self.holds.get(job, 0) + 1
        timer = self._timers.pop(job, None)
        if timer is not None:
            timer.cancel()
        path = os.path.join(self.state_dir, job)
        if not os.path.exists(path):
            with open(path, "w"):
                pass

    def closed(self, job: str) -> None:
        """A hold on `job`'s output ended; the last one starts the grace."""
        self.holds[job] -= 1
        if not self.holds[job]:
            del self.holds[job]
            self._expire_later(job)

    def forget(self, job: str) -> None:
        """`job`'s output was removed (by its driver): nothing left to time."""
        timer = self._timers.pop(job, None)
        if timer is not None:
            timer.cancel()
        try:
            os.unlink(os.path.join(self.state_dir, job))
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Stop the timers (the ids stay written down for the node's next life)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()

    def _expire_later(self, job: str) -> None:
        loop = asyncio.get_running_loop()
        old = self._timers.pop(job, None)
        if old is not None:
            old.cancel()
        self._timers[job] = loop.call_later(self.grace, self._expire, job)

    def _expire(self, job: str) -> None:
        self._timers.pop(job, None)
        if job in self.holds:   # held again meanwhile
            return
        task = asyncio.ensure_future(self._remove(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _remove(self, job: str) -> None:
        log.info("no driver holds %s any more: removing its output", job)
        try:
            await self.remove(job)
        except Exception:   # keep the id written down: tried again in the node's next life
            log.exception("removing the output of %s", job)
            return
        if job not in self.holds:
            self.forget(job)
