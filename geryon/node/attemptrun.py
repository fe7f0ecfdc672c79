"""One task attempt on a node: a worker process, its stderr sent to the driver, its result.

`run_attempt` starts `python -m geryon.node.worker JOB TASK` in its own session with the
attempt's spec on stdin; its stdout and stderr travel to the driver as binary frames
(`\\x02` + bytes), then one text frame `{"op": "result", "result": {...}}`. A worker that
ends without a result is reported as a system failure with the last lines of its stderr (a
memory failure when the kernel's OOM killer took it). When the driver's socket closes (the
driver died, or it gave the attempt up because this node missed its lease) the attempt is
killed: a paused node that wakes up cannot deliver a result anyone will use.

Not here: the routes, packs and outputs (`geryon.node.jobservice`), the task's body
(`geryon.node.worker`).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections import deque
from typing import Any

from geryon.mapreduce import memory
from geryon.mapreduce.attempt import AttemptId, FailureKind
from registry import tls
from registry.channel import Channel

log = logging.getLogger(__name__)

STDERR_TAIL = 30
"""Lines of an attempt's stderr kept for its failure message."""


def tls_ca() -> str | None:
    """What workers need to speak to the cluster as this node does: None (plain HTTP), else
    the cluster CA's path ("" for the system's CAs)."""
    if tls.cluster_ssl() is None:
        return None
    ca = tls.cluster_ca()
    return str(ca) if ca is not None else ""


async def run_attempt(ws: Channel, spec: dict[str, Any], aid: AttemptId, node: str, cwd: str,
                      running: dict[int, tuple[str, asyncio.subprocess.Process]]) -> None:
    """Run attempt `aid` of job `spec["job"]` on node `node`, in `cwd`, for the driver on `ws`;
    the worker is in `running` (by pid) while it runs."""
    job, tid, result_path = spec["job"], str(aid), spec["result"]
    oom_before = memory.oom_kills()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "geryon.node.worker", job, tid, cwd=cwd, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    running[proc.pid] = (job, proc)
    tail: deque[str] = deque(maxlen=STDERR_TAIL)
    lock = asyncio.Lock()
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(json.dumps(spec).encode())
        await proc.stdin.drain()
        proc.stdin.close()
        await ws.send_json({"op": "started", "pid": proc.pid, "node": node})

        async def pump(stream: asyncio.StreamReader) -> None:
            while line := await stream.readline():
                tail.append(line.decode(errors="replace").rstrip("\n"))
                async with lock:
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.send_bytes(b"\x02" + line)

        async def watch() -> None:
            async for _ in ws:           # ends when the driver goes away
                pass

        pumps = asyncio.gather(pump(proc.stdout), pump(proc.stderr))
        watcher = asyncio.create_task(watch())
        done, _ = await asyncio.wait({asyncio.ensure_future(pumps), watcher},
                                     return_when=asyncio.FIRST_COMPLETED)
        if watcher in done:               # the driver is gone: nobody wants this attempt
            log.info("driver left: killing %s of %s", tid, job)
            await kill_worker(proc)
            pumps.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumps
            return
        status = await proc.wait()
        result = _read_result(result_path)
        if result is None:
            sig = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
            result = {"task": aid.task, "attempt": aid.attempt, "ok": False,
                      "error": f"task {tid} on {node}: worker {sig}", "error_kind": FailureKind.SYSTEM,
                      "detail": "\n".join(tail)}
            if status == -signal.SIGKILL and memory.oom_kills() > oom_before:
                result.update(error_kind=FailureKind.MEMORY, error=memory.killed_message(
                    f"{tid} on {node}", int(spec_job_budget(spec)), memory.memory_limit()))
        await ws.send_json({"op": "result", "result": result})
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    finally:
        await kill_worker(proc)
        running.pop(proc.pid, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(result_path)


def spec_job_budget(spec: dict[str, Any]) -> int:
    """The sort budget of the job an attempt's spec belongs to (for the out-of-memory line)."""
    from geryon.mapreduce.job import DEFAULT_SORT_BUDGET
    from geryon.mapreduce.jobpack import MANIFEST

    try:
        with open(os.path.join(spec["pack"], MANIFEST)) as f:
            return int(json.load(f).get("settings", {}).get("sort_budget", DEFAULT_SORT_BUDGET))
    except (OSError, ValueError, TypeError, AttributeError):
        return DEFAULT_SORT_BUDGET


def _read_result(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


async def kill_worker(proc: asyncio.subprocess.Process) -> None:
    """Stop a worker's process group: SIGTERM, then SIGKILL after 2 s."""
    if proc.returncode is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), 2.0)
            return
        except asyncio.TimeoutError:
            continue
