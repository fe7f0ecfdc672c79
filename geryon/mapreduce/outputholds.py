"""A multi-step job's driver holding its intermediate step outputs on the nodes, so that a driver
killed between steps leaves none behind.

Before step i (not the last) runs, the driver opens `GET /v1/jobs/JOB-s<i>/hold-output` (a signed
WebSocket) on every node that may commit a part of it, and waits until each is open; it keeps
them open, reopening any that drops, until it has removed that output itself. A node whose last
such hold closes, and stays closed for its grace, removes the output (`geryon.node.heldoutputs`).
Not here: running the steps (`geryon.mapreduce.steps`), the node side.
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
from collections.abc import Sequence
from typing import Any

from geryon.mapreduce.jobnodes import HOLD_RETRY, Nodes
from geryon.net.aio import UNREACHABLE

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 10.0
"""Seconds the driver waits for the holds of a step's output to open before the step runs anyway
(a node that does not answer cannot run the step's reducers either)."""


class OutputHolds:
    """The holds of one multi-step job's driver, on its own loop thread (`Nodes`)."""

    def __init__(self, secret: bytes | None, lease: float) -> None:
        self.nodes = Nodes(secret, lease)
        self._holds: dict[tuple[str, str], cf.Future[Any]] = {}

    def hold(self, cpus: Sequence[Any], job_id: str, timeout: float = OPEN_TIMEOUT) -> int:
        """Hold `job_id`'s output on the node of each of `cpus` (once per node), waiting until
        every new hold is open or `timeout` passed; how many are not open yet (they go on trying)."""
        opened: list[cf.Future[bool]] = []
        for cpu in {c.url: c for c in cpus}.values():
            key = (cpu.url, job_id)
            if key in self._holds:
                continue
            ready: cf.Future[bool] = cf.Future()
            self._holds[key] = self.nodes.io.spawn(self._one(cpu, job_id, ready))
            opened.append(ready)
        _, late = cf.wait(opened, timeout)
        if late:
            log.warning("%d node(s) did not take the hold on %s within %.0f s", len(late), job_id, timeout)
        return len(late)

    async def _one(self, cpu: Any, job_id: str, ready: cf.Future[bool]) -> None:
        path = f"/v1/jobs/{job_id}/hold-output"
        while True:
            try:
                async with await self.nodes.signer.connect(self.nodes.http, cpu.url, path,
                                                           what=f"output hold on {cpu.name}") as ws:
                    if not ready.done():
                        ready.set_result(True)
                    async for _ in ws:
                        pass
            except UNREACHABLE:
                pass
            await asyncio.sleep(HOLD_RETRY)

    def release(self, job_id: str) -> None:
        """Stop holding `job_id`'s output (removed, or left to the nodes)."""
        for key in [k for k in self._holds if k[1] == job_id]:
            self._holds.pop(key).cancel()

    def close(self) -> None:
        """Close every hold (the nodes then remove what is still held, after their grace)."""
        for fut in self._holds.values():
            fut.cancel()
        self._holds.clear()
        self.nodes.close()
