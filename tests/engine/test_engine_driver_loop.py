"""The driver's loop thread (`geryon.mapreduce.jobnodes.Nodes.io`, a `geryon.net.loop.LoopThread`)
closes with no task left pending, and its HTTP session closed.

A task still pending when its loop closes is destroyed mid-coroutine ("Task was destroyed but it
is pending", "coroutine ... was never awaited"); under pytest's `filterwarnings = error` that fails
whichever test the garbage collector happens to run in (CI: a multi-step cluster job, whose steps
each close a loop, while a WebSocket's heartbeat ping was in flight)."""
from __future__ import annotations

import asyncio

from geryon.mapreduce.jobnodes import Nodes


def test_a_task_still_ending_when_the_drain_times_out_is_finished_before_the_loop_closes():
    nodes = Nodes(None, lease=1.0)
    io = nodes.io
    http = nodes.http
    io.drain_timeout = 0.05
    ended: list[str] = []

    async def hold() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            try:
                # Slow to end, as a socket's close on a busy machine: past the drain's timeout.
                await asyncio.shield(asyncio.sleep(2))
            finally:
                ended.append("hold")
            raise

    task = io.spawn(hold())
    io.call(asyncio.sleep(0))
    nodes.close()
    assert io.loop.is_closed() and http.closed
    assert ended == ["hold"]
    assert task.cancelled()


def test_a_task_made_while_the_loop_drains_is_run_before_it_closes():
    nodes = Nodes(None, lease=1.0)
    io = nodes.io
    made: list[asyncio.Task[None]] = []
    ran: list[str] = []

    async def ping() -> None:
        ran.append("ping")

    async def hold() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            # As a WebSocket's heartbeat timer does mid-close: a new task, after the drain
            # listed the loop's tasks.
            made.append(asyncio.get_running_loop().create_task(ping()))

    io.spawn(hold())
    io.call(asyncio.sleep(0))
    nodes.close()
    assert io.loop.is_closed()
    assert made and all(t.done() for t in made)
    assert ran == ["ping"] or all(t.cancelled() for t in made)
