"""The one loop thread (`registry.loopthread.LoopThread`, `geryon.net.loop`): calls from other
threads, the error once closed, and a close that leaves no task pending, for every user of it."""
from __future__ import annotations

import ast
import asyncio
import concurrent.futures as cf
import gc
import logging
import pathlib
import threading

import pytest

from registry.errors import RegistryError
from registry.loopthread import LoopClosed, LoopThread

REPO = pathlib.Path(__file__).resolve().parent.parent.parent


def test_call_runs_on_the_loops_thread_and_returns_its_result():
    with LoopThread("t-call") as io:
        async def where() -> str:
            return threading.current_thread().name
        assert io.call(where()) == "t-call"
        assert io.spawn(where()).result(30) == "t-call"


def test_a_call_that_outlasts_its_timeout_raises_and_the_loop_goes_on():
    with LoopThread() as io:
        with pytest.raises(cf.TimeoutError):
            io.call(asyncio.sleep(3600), timeout=0.01)
        assert io.call(asyncio.sleep(0, "still here")) == "still here"


def test_a_call_after_close_raises_the_callers_error_and_leaves_no_coroutine_unawaited():
    io = LoopThread(on_closed=lambda: RegistryError("client is closed"))
    io.close()
    io.close()   # idempotent
    coro = asyncio.sleep(0)
    with pytest.raises(RegistryError, match="client is closed"):
        io.call(coro)
    assert coro.cr_frame is None   # closed: no "never awaited" warning
    with pytest.raises(LoopClosed):
        _closed().spawn(asyncio.sleep(0))


def _closed() -> LoopThread:
    io = LoopThread()
    io.close()
    return io


def test_a_call_from_the_loops_own_thread_is_refused_not_a_deadlock():
    with LoopThread() as io:
        async def inner() -> str:
            try:
                io.call(asyncio.sleep(0))
            except RuntimeError as exc:
                return str(exc)
            return "no error"
        assert "called from its own loop" in io.call(inner(), timeout=30)

        async def close_inside() -> str:
            try:
                io.close()
            except RuntimeError as exc:
                return str(exc)
            return "no error"
        assert "closed from its own loop" in io.call(close_inside(), timeout=30)
        assert not io.closed


def test_close_cancels_what_runs_then_awaits_finish_then_what_finish_started():
    order: list[str] = []
    started: list[asyncio.Task[None]] = []

    async def late() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            order.append("late ended")

    async def finish() -> None:
        order.append("finish")
        started.append(asyncio.get_running_loop().create_task(late()))
        await asyncio.sleep(0)

    io = LoopThread(finish=finish)

    async def hold() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            order.append("hold ended")

    fut = io.spawn(hold())
    io.call(asyncio.sleep(0))
    io.close()
    assert order[:3] == ["hold ended", "finish", "late ended"]
    assert fut.cancelled() and all(t.done() for t in started)
    assert io.loop.is_closed() and not io._thread.is_alive()


def test_a_task_slow_to_end_past_the_drain_is_finished_on_the_callers_thread(caplog):
    io = LoopThread()
    io.drain_timeout = 0.05
    ended: list[str] = []

    async def hold() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            try:
                await asyncio.shield(asyncio.sleep(1))   # slower than the drain's timeout
            finally:
                ended.append(threading.current_thread().name)
            raise

    fut = io.spawn(hold())
    io.call(asyncio.sleep(0))
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        io.close()
        del fut
        gc.collect()
    assert ended == [threading.current_thread().name]
    assert io.loop.is_closed()
    assert not [r for r in caplog.records if "destroyed but it is pending" in r.getMessage()]


def test_the_executor_is_shut_down_with_the_loop():
    io = LoopThread()
    ran = threading.Event()
    io.call(asyncio.to_thread(ran.set))
    io.close()
    assert ran.is_set() and io.loop.is_closed()


def _sources() -> list[pathlib.Path]:
    return [p for pkg in ("geryon", "registry") for p in sorted((REPO / pkg).rglob("*.py"))]


def test_one_loop_thread_class_in_the_code_base():
    """A loop run forever on a thread is written once: registry/loopthread.py."""
    found = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "run_forever":
                found.append(path.relative_to(REPO).as_posix())
    assert found == ["registry/loopthread.py"]


def test_every_client_of_ours_runs_on_it():
    from geryon.mapreduce.jobnodes import Nodes
    from geryon.net.loop import LoopThread as NetLoopThread
    from geryon.taskfs.client import LoopThread as SessionLoopThread
    from geryon.taskfs.wire import SessionError
    from registry.client import RegistryClient

    assert NetLoopThread is LoopThread and issubclass(SessionLoopThread, LoopThread)
    nodes = Nodes(None, lease=1.0)
    io = nodes.io
    http = nodes.http
    assert isinstance(io, LoopThread) and not http.closed
    nodes.close()
    assert http.closed and io.loop.is_closed()
    session_loop = SessionLoopThread()
    session_loop.close()
    with pytest.raises(SessionError, match="session is closed"):
        session_loop.call(asyncio.sleep(0))
    client = RegistryClient("http://127.0.0.1:9")
    assert isinstance(client._io, LoopThread)
    client.close()
    assert client._http.closed and client._loop.is_closed()
    with pytest.raises(RegistryError, match="client is closed"):
        client.find()
