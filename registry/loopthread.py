"""An asyncio loop on a thread of its own, for synchronous callers, that closes with nothing pending.

The one loop-thread class of the code base: the registry client, the job driver's node
connection (`geryon.mapreduce.jobnodes`) and taskfs sessions (`geryon.taskfs.client`) each run
their aiohttp sessions on one. It lives here, not in `geryon.net` (which re-exports it as
`geryon.net.loop.LoopThread`), because `registry/` may not import `geryon/`
(`tests/test_layering.py`).

Closing is safe: every task still on the loop (a hold, a heartbeat ping, a reader) is cancelled
and awaited on the loop's thread, then the caller's `finish` (closing an HTTP session) runs,
then whatever that started is cancelled too; what is left after `drain_timeout` (a task slow to
end, a timer that fired between the drain and the stop) is finished on the caller's thread, so
no task is destroyed pending ("Task was destroyed but it is pending", "coroutine ... was never
awaited"). Not here: what runs on the loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_DRAIN_TIMEOUT = 5.0
"""Seconds `close` waits for the loop's tasks to end on the loop's thread."""

DEFAULT_JOIN_TIMEOUT = 5.0
"""Seconds `close` waits for the loop's thread once the loop is told to stop."""


class LoopClosed(RuntimeError):
    """A call on a loop thread that is closed (callers name their own error with `on_closed`)."""


async def cancel_the_rest(rounds: int = 5) -> None:
    """Cancel every other task on the running loop and wait for them, again while cancelling
    starts more (a WebSocket's heartbeat timer can fire mid-close and make a ping task)."""
    for _ in range(rounds):
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if not rest:
            return
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)


class LoopThread:
    """An asyncio loop running on a daemon thread; `call` and `spawn` from any other thread.

    Args:
        name: the thread's name.
        on_closed: the error `call` raises once `close` has begun (default `LoopClosed`).
        finish: awaited on the loop while it closes, after its tasks are cancelled (closing an
            HTTP session); it may be awaited twice, so it must be idempotent.
    """

    drain_timeout = DEFAULT_DRAIN_TIMEOUT
    """Seconds `close` waits for the loop's tasks to end on the loop's thread; what is left after
    is finished on the caller's thread."""

    join_timeout = DEFAULT_JOIN_TIMEOUT

    def __init__(self, name: str = "geryon-loop", *,
                 on_closed: Callable[[], BaseException] = lambda: LoopClosed("loop thread is closed"),
                 finish: Callable[[], Awaitable[Any]] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.closed = False
        self.on_closed = on_closed
        self.finish = finish
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _check(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self.closed:
            coro.close()
            raise self.on_closed()
        if threading.current_thread() is self._thread:
            coro.close()   # waiting for it here would wait forever
            raise RuntimeError(f"{self._thread.name}: called from its own loop")

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and wait for its result (`concurrent.futures.TimeoutError`
        after `timeout` seconds; the coroutine keeps running)."""
        self._check(coro)
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> cf.Future[T]:
        """Start `coro` on the loop; its future (cancelled by `close` if still running)."""
        self._check(coro)
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def _drain(self) -> None:
        await cancel_the_rest()
        if self.finish is not None:
            await self.finish()
        await cancel_the_rest()

    def close(self) -> None:
        """Cancel what runs on the loop, `finish`, stop the thread, close the loop; idempotent.
        Calls from other threads raise `on_closed()` from the start of the close."""
        if self.closed:
            return
        if threading.current_thread() is self._thread:
            raise RuntimeError(f"{self._thread.name}: closed from its own loop")   # it would wait on itself
        self.closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._drain(), self.loop).result(self.drain_timeout)
        except Exception:  # closing is best effort; what is left is finished below
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(self.join_timeout)
        if self.loop.is_running():
            return  # the thread is stuck in a callback; it is a daemon, and the loop stays open
        # A drain that timed out, or a timer that fired between the drain and the stop, can leave
        # tasks that never ran: finish them here, on this thread, before closing.
        try:
            self.loop.run_until_complete(self._drain())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
