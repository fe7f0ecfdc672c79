"""The Dask worker's side of a Geryon job: one attempt as a Dask task, its shuffle reads, its clean-up.

`run_attempt` is the function the driver (`geryon.mapreduce.daskcpu`) submits as a Dask task,
pinned to one worker. Its arguments are plain values (the job's id, the task as JSON) and the
job pack's bytes (`geryon.mapreduce.jobpack`, content-addressed, unpacked once per worker):
no user function is ever pickled. The attempt itself runs in a child process
(`python -m geryon.mapreduce.daskworker`, spec on stdin), as on a Geryon node: the user's code
gets its own environment, file descriptors and memory, and a crash takes only the attempt.
Map outputs and staged parts stay on the worker's local disk (`<local_directory>/geryon/jobs/JOB`).
What the attempt prints streams to the driver while it runs, as Dask events on the job's topic
(`log_topic`, `Worker.log_event`, relayed by the scheduler: `pump`, the first STREAM_CAP bytes);
the result carries the output's tail, and the driver passes on what it has not had (`stream_rest`).

The shuffle: a reducer reads segment r of each map output either straight from the file
(the worker that wrote it is on this host: "disk") or from the worker that holds it, over
Dask's own comms, in bounded pieces ("transfer": `install_handler`, run on every worker when a
job starts, adds the `geryon_read` handler; a refusal is an "error" answer, never an exception). Nothing holds a whole partition in memory: at most one piece per map
output is in flight. Not here: deciding anything (the driver), the tasks' code (maptask, reducetask).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from geryon.errors import GeryonError
from geryon.mapreduce.attempt import AttemptId, FailureKind, classify
from geryon.mapreduce.segments import Segment, file_chunks
from geryon.mapreduce.task import MapTask, ReduceTask, TaskResult

READ_PIECE = 4 << 20
"""Bytes of a map output (or part) one `geryon_read` request returns at most."""

LOG_CAP = 1 << 20
"""Bytes of an attempt's printed output sent back with its result (its tail)."""

STREAM_CAP = 1 << 20
"""Bytes of an attempt's printed output streamed to the driver while it runs (the scheduler
relays them as events and keeps the last ones: bounded)."""

FLUSH_AFTER = 0.5
"""Seconds a partial line (no newline yet) waits before it is streamed anyway."""

SHUFFLES = ("auto", "disk", "transfer")
"""How reducers read map outputs: from the file when its worker is on this host, else over
Dask's comms ("auto"); always from the file (a shared or local disk: "disk"); always over
Dask's comms ("transfer")."""

STAGING = "staging"
"""The directory of a job's directory on a worker holding its reduces' staged parts."""

class StepInputLost(GeryonError):
    """A part of the step before cannot be read from the worker that made it (gone, or refusing):
    the same on every worker, so the job fails (its steps are not run again)."""

    failure_kind = FailureKind.INPUT


STEP_INPUT = "geryon-dask-step:"
"""The prefix of a map input that is the step before's parts on a worker (`step_location`)."""

_NAME = re.compile(r"^(staging/)?[A-Za-z0-9_][A-Za-z0-9_.+-]{0,200}$")
_JOB = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,200}$")


def geryon_dir(local_directory: str) -> str:
    """Where Geryon keeps its packs and jobs on a worker."""
    return os.path.join(local_directory, "geryon")


def job_dir(local_directory: str, job_id: str) -> str:
    if not _JOB.match(job_id):
        raise ValueError(f"bad job id {job_id!r}")
    return os.path.join(geryon_dir(local_directory), "jobs", job_id)


def checked_path(local_directory: str, job_id: str, name: str) -> str:
    """The file `name` (a map output or `staging/<part>`) of a job on this worker.

    Raises:
        ValueError: a job id or a name that is not one of ours (no other file is ever served).
    """
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ValueError(f"bad file name {name!r}")
    return os.path.join(job_dir(local_directory, job_id), name)


def read_piece(local_directory: str, job: str, name: str, offset: int, length: int) -> bytes:
    """Bytes [offset, offset+length) of a job's file on this worker, at most READ_PIECE."""
    if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or not 0 < length <= READ_PIECE:
        raise ValueError(f"bad range {offset!r}+{length!r}")
    with open(checked_path(local_directory, job, name), "rb") as f:
        f.seek(offset)
        return f.read(length)


def install_handler(dask_worker: Any = None) -> None:
    """Add the `geryon_read` handler to this worker (`Client.run` passes `dask_worker`): pieces of
    a job's files here, by job id and file name (`read_piece`), never by path."""
    local = dask_worker.local_directory

    async def geryon_read(job: str = "", name: str = "", offset: int = 0, length: int = 0) -> dict[str, Any]:
        try:
            data = await asyncio.get_running_loop().run_in_executor(None, read_piece, local, job, name, offset, length)
        except (OSError, ValueError, TypeError) as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {"data": data}

    dask_worker.handlers["geryon_read"] = geryon_read


def location_of(address: str, job_id: str, name: str) -> str:
    """How a reduce task names a map output: its worker's address, the job, the file."""
    return f"{address}/{job_id}/{name}"


def parse_location(location: str) -> tuple[str, str, str]:
    """`location_of`'s parts: (worker address, job id, file name)."""
    rest, _, name = location.rpartition("/")
    address, _, job = rest.rpartition("/")
    return address, job, name


# -- the Dask task ------------------------------------------------------------------------------
def run_attempt(job_id: str, digest: str, pack: bytes, task_json: dict[str, Any], shuffle: str = "auto",
                dirs: dict[str, list[str]] | None = None, step: int = 0) -> dict[str, Any]:
    """One attempt on this Dask worker: its `TaskResult` as JSON, with "log" (what it printed),
    "address", "host" and "dir" (this worker's job directory).

    `dirs` maps worker addresses to (host, job directory), for reads straight from the disk: for a
    reduce, this job's directories; for a map of a multi-step job's later step, the step before's
    (its parts are the map's input, `step_input`). `step`: which step of the pack (from 0).
    """
    from distributed import get_worker

    from geryon.mapreduce import jobpack

    worker = get_worker()
    local = worker.local_directory
    work = job_dir(local, job_id)
    os.makedirs(os.path.join(work, STAGING), exist_ok=True)
    os.makedirs(os.path.join(work, "attempts"), exist_ok=True)
    aid = AttemptId.of_json(task_json)
    started = time.monotonic()
    base = {"address": worker.address, "host": socket.gethostname(), "dir": work}
    try:
        pack_dir = jobpack.unpack(pack, os.path.join(geryon_dir(local), "packs"), digest)
    except Exception as exc:   # a damaged pack: the same on every worker
        return {**TaskResult(task=aid.task, attempt=aid.attempt, ok=False, error_kind=classify(exc),
                             error=f"task {aid.task} could not start: {exc}").to_json(), **base, "log": ""}
    result_path = os.path.join(work, "attempts", f"{aid}.json")
    spec = {"job": job_id, "pack": pack_dir, "task": task_json, "work": work, "result": result_path,
            "address": worker.address, "shuffle": shuffle, "dirs": dirs or {}, "parent": os.getpid(), "step": step}
    log_path = os.path.join(work, "attempts", f"{aid}.log")
    topic, name = log_topic(job_id), str(aid)

    def stream(offset: int, data: bytes) -> None:
        worker.log_event(topic, {"attempt": name, "offset": offset, "data": data})
    with open(log_path, "w+b") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "geryon.mapreduce.daskworker", job_id, name],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(spec).encode())
                proc.stdin.close()
            except BrokenPipeError:   # it died at once: its status says how
                pass
            size = pump(proc.stdout, logf, stream)
            proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        tail_start, printed = _tail(logf, size)
    try:
        with open(result_path) as f:
            out = json.load(f)
    except (OSError, ValueError):
        why = (f"killed by signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"exit status {proc.returncode}")
        kind = FailureKind.MEMORY if proc.returncode == -signal.SIGKILL else FailureKind.SYSTEM
        out = TaskResult(task=aid.task, attempt=aid.attempt, ok=False, error_kind=kind,
                         error=f"{aid} on {worker.address}: the attempt's process ended without a result ({why})",
                         detail=printed[-2000:]).to_json()
    finally:
        for p in (result_path, log_path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
    out["seconds"] = time.monotonic() - started
    return {**out, **base, "log": printed, "log_start": tail_start, "log_size": size}


def log_topic(job_id: str) -> str:
    """The Dask event topic an attempt's printed output streams on (`Worker.log_event`)."""
    return f"geryon-log-{job_id}"


def pump(src: Any, keep: Any, stream: Callable[[int, bytes], None], cap: int = STREAM_CAP) -> int:
    """Copy what an attempt prints (`src`, its stdout and stderr) to `keep` until it closes, and
    pass it on as it comes: `stream(offset, data)` with whole lines (a partial line once it is
    FLUSH_AFTER seconds old or at the end), the first `cap` bytes only (the rest is in `keep`,
    whose tail the result carries). Returns the bytes read."""
    import selectors

    fd = src.fileno()
    size = sent = 0
    pending = b""
    since = 0.0
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            ready = sel.select(FLUSH_AFTER / 2)
            data = os.read(fd, 1 << 16) if ready else None
            if data == b"":
                break
            if data:
                keep.write(data)
                size += len(data)
                if sent < cap:
                    pending += data
                    since = since or time.monotonic()
            if pending:
                cut = pending.rfind(b"\n") + 1
                if not cut and (time.monotonic() - since >= FLUSH_AFTER or len(pending) >= 1 << 16):
                    cut = len(pending)
                if cut:
                    piece, pending = pending[:cut], pending[cut:]
                    since = time.monotonic() if pending else 0.0
                    stream(sent, piece)
                    sent += len(piece)
    if pending and sent < cap:
        stream(sent, pending)
    return size


def _tail(f: Any, size: int) -> tuple[int, str]:
    """The last LOG_CAP bytes of `f` (what the attempt printed), and where they start."""
    start = max(0, size - LOG_CAP)
    f.seek(start)
    return start, f.read().decode("utf-8", errors="replace")


def stream_rest(delivered: int, tail_start: int, tail: str, size: int) -> bytes:
    """What the driver has not yet passed on of an attempt's output when its result comes: it
    has the first `delivered` bytes (streamed); the result has bytes [tail_start, size)."""
    if delivered >= size:
        return b""
    data = tail.encode("utf-8", errors="replace")
    if tail_start > delivered:
        return f"[geryon: {tail_start - delivered} bytes dropped]\n".encode() + data
    return data[delivered - tail_start:]


def forget(job_id: str, dask_worker: Any = None) -> None:
    """Remove a job's directory on this worker (`Client.run` passes `dask_worker`)."""
    if dask_worker is None:
        from distributed import get_worker

        dask_worker = get_worker()
    shutil.rmtree(job_dir(dask_worker.local_directory, job_id), ignore_errors=True)


# -- the attempt's process ----------------------------------------------------------------------
class Fetch:
    """The reduce side's reads of map outputs: from the file, or from its worker over Dask's comms."""

    def __init__(self, me: str, shuffle: str, dirs: dict[str, list[str]]) -> None:
        self.me, self.shuffle, self.dirs = me, shuffle, dirs
        self.host = socket.gethostname()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rpcs: dict[str, Any] = {}

    def __call__(self, location: str, seg: Segment) -> Iterable[bytes]:
        address, job, name = parse_location(location)
        where = self.dirs.get(address)
        if where is not None and (address == self.me or self.shuffle == "disk"
                                  or (self.shuffle == "auto" and where[0] == self.host)):
            path = os.path.join(where[1], name)
            if os.path.isfile(path):
                return file_chunks(path, seg.offset, seg.length)
        return self._remote(location, address, job, name, seg)

    def _remote(self, location: str, address: str, job: str, name: str, seg: Segment) -> Iterator[bytes]:
        from geryon.mapreduce.reducetask import FetchFailed

        offset, left = seg.offset, seg.length
        while left > 0:
            n = min(left, READ_PIECE)
            try:
                answer = self._call(address, job=job, name=name, offset=offset, length=n)
            except Exception as exc:  # the worker is gone or does not answer
                raise FetchFailed(location, f"worker unreachable: {type(exc).__name__}: {exc}") from exc
            if "error" in answer:
                raise FetchFailed(location, str(answer["error"]))
            data = answer.get("data") or b""
            if not data:
                raise FetchFailed(location, f"truncated: {left} bytes missing")
            offset += len(data)
            left -= len(data)
            yield data

    def _call(self, address: str, **kwargs: Any) -> dict[str, Any]:
        from distributed.core import rpc
        from distributed.security import Security

        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        r = self._rpcs.get(address)
        if r is None:
            r = self._rpcs[address] = rpc(address, connection_args=Security().get_connection_args("worker"),
                                          timeout=30)
        return self._loop.run_until_complete(r.geryon_read(**kwargs))  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._loop is not None:
            for r in self._rpcs.values():
                self._loop.run_until_complete(r.close_rpc())
            self._loop.close()


def run(spec: dict[str, Any]) -> TaskResult:
    """Run the attempt a spec describes (in the attempt's own process)."""
    from geryon.mapreduce import jobpack, memory
    from geryon.mapreduce.maptask import run_with_replicas
    from geryon.mapreduce.reducetask import run_reduce_task

    task_json = spec["task"]
    aid = AttemptId.of_json(task_json)
    os.environ["GERYON_TASK"] = str(aid)
    os.environ.update(jobpack.environment(spec["pack"]))   # before the scripts load: they may read it
    job = jobpack.load(spec["pack"], int(spec.get("step") or 0))
    problem = memory.budget_problem(job.sort_budget)
    if problem is not None:  # this worker has not the memory: another may (retried elsewhere)
        return TaskResult(task=aid.task, attempt=aid.attempt, ok=False, error=f"task {aid}: {problem}",
                          error_kind=FailureKind.MEMORY)
    work = spec["work"]
    if task_json["kind"] == "map":
        task = MapTask.from_json({**task_json, "workdir": work})
        copied = None
        if task.root.startswith(STEP_INPUT):   # the step before's parts, on the workers that made them
            root, copied = step_input(task, spec, os.path.join(work, "attempts", f"{aid}.in"))
            task = replace(task, root=root, alternates=())
        try:
            result = run_with_replicas(job, task, open_input, os.path.join(work, "attempts"))
        finally:
            if copied is not None:
                shutil.rmtree(copied, ignore_errors=True)
        if result.ok:
            result.output = os.path.basename(result.output)
        return result
    rtask = ReduceTask.from_json({**task_json, "out_root": work, "staging": STAGING})
    fetch = Fetch(spec["address"], spec["shuffle"], spec["dirs"])
    try:
        return run_reduce_task(job, rtask, fetch)
    finally:
        fetch.close()


def step_location(address: str, job_id: str) -> str:
    """How a map of a multi-step job's later step names its input: the parts the step before
    (`job_id`) left on the worker at `address` (`geryon.mapreduce.dasksteps`)."""
    return f"{STEP_INPUT}{address}/{job_id}"


def step_input(task: MapTask, spec: dict[str, Any], copy_to: str) -> tuple[str, str | None]:
    """The local directory a map reads the step before's parts from: that step's job directory
    when its worker is this one or on this host (as the shuffle reads map outputs), else a copy
    of the split's files fetched over Dask's comms into `copy_to` (to disk, a piece at a time).
    Returns the directory and, for a copy, what to remove after.

    Raises:
        StepInputLost: the worker holding them is gone, or refuses.
    """
    address, _, job = task.root[len(STEP_INPUT):].rpartition("/")
    names = [r.path.lstrip("/") for r in task.split.ranges]
    where = spec.get("dirs", {}).get(address)
    shuffle = spec.get("shuffle", "auto")
    if where is not None and (address == spec["address"] or shuffle == "disk"
                              or (shuffle == "auto" and where[0] == socket.gethostname())):
        if all(os.path.isfile(os.path.join(where[1], n)) for n in names):
            return where[1], None
    fetch = Fetch(spec["address"], shuffle, {})
    try:
        for name in dict.fromkeys(names):
            path = os.path.join(copy_to, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                offset = 0
                while True:
                    try:
                        answer = fetch._call(address, job=job, name=name, offset=offset, length=READ_PIECE)
                    except Exception as exc:   # the worker is gone or does not answer
                        raise StepInputLost(f"{job}/{name} on Dask worker {address}: "
                                              f"unreachable: {type(exc).__name__}: {exc}") from exc
                    if "error" in answer:
                        raise StepInputLost(f"{job}/{name} on Dask worker {address}: {answer['error']}")
                    data = answer.get("data") or b""
                    if not data:
                        break
                    f.write(data)
                    offset += len(data)
    finally:
        fetch.close()
    return copy_to, copy_to


def open_input(location: str) -> Any:
    """Opens a map's input location: a local path (a chunk or plain directory), an fsspec URL
    (`geryon.disks.urlfs`), or a `geryon://` chunk (`geryon.disks.opendisk.Inputs`, with the
    secret found here). Each imports only what it needs: aiohttp and fsspec cost an attempt's
    process about 0.2 CPU s to import, and most maps read local paths."""
    if not location.startswith(("geryon://", "http://", "https://")):
        from geryon.disks.urlfs import is_url

        if not is_url(location):
            from geryon.disks.chunk import ChunkFS

            return ChunkFS(location), location
        from geryon.disks.urlfs import open_url

        return open_url(location), None
    from geryon.disks.opendisk import Inputs

    return Inputs("", {}, _secret()).open(location)


def _secret() -> bytes | None:
    """The cluster secret, for `geryon://` inputs, found on the worker as the CLI finds it
    ($GERYON_SECRET_FILE, else the default file); it never travels with the task."""
    from geryon.disks.remote import library_secret

    try:
        return library_secret()
    except Exception:   # no secret here: a geryon:// input fails with its own clear error
        return None


def _die_with_parent(parent: int) -> None:
    """Linux: this attempt is killed when its Dask worker dies (a lost worker's attempts must not
    go on using its machine); elsewhere, nothing."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)       # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:              # the worker died before the call
        os._exit(1)


def main() -> int:
    from geryon.mapreduce import memory
    from geryon.mapreduce.task import traceback_tail

    memory.volunteer_for_oom()  # the kernel should take this attempt, not the Dask worker
    spec = json.loads(sys.stdin.read())
    _die_with_parent(int(spec.get("parent") or os.getppid()))
    try:
        result = run(spec)
    except Exception as exc:  # the pack could not be loaded, or a bug of ours
        aid = AttemptId.of_json(spec.get("task", {}))
        result = TaskResult(task=aid.task, attempt=aid.attempt, ok=False,
                            error=f"task {aid.task} could not start: {type(exc).__name__}: {exc}",
                            error_kind=classify(exc, otherwise=FailureKind.SYSTEM),
                            detail=traceback_tail(exc.__cause__ or exc))
    result.peak_rss = memory.peak_rss()
    tmp = spec["result"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result.to_json(), f)
    os.replace(tmp, spec["result"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
