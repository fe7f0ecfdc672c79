"""Dask mode: the one driver's attempts run as Dask tasks on the workers of a Dask cluster.

Each Dask worker is one `geryon.mapreduce.cpu.Cpu` (`DaskCpu`, as many slots as the worker has
threads); an attempt is a Dask task pinned to its worker (`geryon.mapreduce.daskworker.run_attempt`)
that runs the job from its content-addressed job pack (`geryon.mapreduce.jobpack`: files, never
pickled functions). `DaskPolicy` is what differs from local mode: map outputs stay on the
worker that wrote them and are read by the reducers from its disk or over Dask's comms;
a worker that leaves the cluster is a dead cpu (its running attempts are lost, its map
outputs recomputed, its staged parts reduced again); parts are staged on the reducers'
workers and, once every reduce succeeded, copied to the driver's output directory and
committed there as in local mode (`part-0000r`, `_SUCCESS`).

Inputs are read by the workers: local paths (visible to them, as on a shared filesystem),
`geryon://` chunks and ndb-named disks (the workers find the cluster secret as the CLI does),
and fsspec URLs (`geryon.disks.urlfs`); the driver lists them to plan (`resolve_dask_inputs`).
What attempts print streams back as Dask events (`daskworker.pump`). The workers are
the ones the scheduler knows when the job starts. Not here: the driver (`geryon.mapreduce.engine`),
the worker's side (`geryon.mapreduce.daskworker`).
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from typing import Any

from geryon.errors import GeryonError
from geryon.mapreduce import daskworker, outdir
from geryon.mapreduce.attempt import FailureKind
from geryon.mapreduce.cpu import Cpu, OnLog
from geryon.mapreduce.jobpack import JobPack
from geryon.mapreduce.policy import CpuLost, LocalPolicy
from geryon.mapreduce.report import JobReport
from geryon.mapreduce.task import MapTask, ReduceTask, TaskResult
from geryon.defaults import DEFAULT_DASK_CONNECT_TIMEOUT as DEFAULT_CONNECT_TIMEOUT
from geryon.mapreduce.daskinputs import resolve_dask_inputs

log = logging.getLogger(__name__)

WATCH_INTERVAL = 0.5
"""Seconds between two looks at the scheduler's list of workers (a worker gone is a dead cpu)."""

MAX_CPU_FAILURES = 3
"""Failed attempts after which a worker is excluded from the job."""


class WorkerLost(GeryonError):
    """An attempt's Dask worker left the cluster (killed, lost), or its task was lost with it."""

    failure_kind = FailureKind.LOST


def connect(dask: Any, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> tuple[Any, bool]:
    """A `distributed.Client` for `dask` (a Client, or a scheduler address), and whether it is ours to close.

    Raises:
        GeryonError: distributed is not installed, or the scheduler does not answer.
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise GeryonError("--dask needs the distributed package: pip install 'geryon[dask]'") from exc
    if isinstance(dask, Client):
        return dask, False
    address = str(dask)
    try:
        return Client(address, timeout=timeout, set_as_default=False), True
    except (OSError, TimeoutError, ValueError) as exc:
        raise GeryonError(f"Dask scheduler {address}: cannot connect: {exc}") from exc


def workers_of(client: Any) -> dict[str, Any]:
    """The scheduler's workers now (address -> their description), asked of the scheduler itself.

    Not `Client.scheduler_info()`: it returns the client's cached identity, which the client's own
    periodic refresh (asking for no workers) may overwrite between the fetch and the read; a
    watcher reading it then saw every worker gone (the job failed, 1 run in 4 here).
    """
    identity = client.sync(client.scheduler.identity, n_workers=-1)
    return dict(identity.get("workers") or {})


class DaskWorkers:
    """The Dask cluster as the driver sees it: its client, the job's pack, and which workers live."""

    def __init__(self, client: Any, job_id: str, pack: JobPack, shuffle: str = "auto", *, step: int = 0,
                 input_dirs: dict[str, list[str]] | None = None) -> None:
        """`step`: which step of the pack this job is (a multi-step job's, `geryon.mapreduce.dasksteps`);
        `input_dirs`: the step before's job directories (worker address -> [host, directory])."""
        if shuffle not in daskworker.SHUFFLES:
            raise GeryonError(f"bad shuffle {shuffle!r}: one of {', '.join(daskworker.SHUFFLES)}")
        self.client, self.job_id, self.pack, self.shuffle = client, job_id, pack, shuffle
        self.step, self.input_dirs = step, dict(input_dirs or {})
        info = workers_of(client)
        if not info:
            raise GeryonError(f"the Dask cluster at {client.scheduler.address} has no workers")
        client.run(daskworker.install_handler, workers=sorted(info))
        self.live: set[str] = set(info)
        self.dirs: dict[str, list[str]] = {}     # worker address -> [host, the job's directory]
        self._lock = threading.Lock()
        self._attempts: dict[str, tuple[str, Any, cf.Future[TaskResult]]] = {}   # key -> (worker, dask future, ours)
        self._streams: dict[str, list[Any]] = {}    # attempt id -> [on_log, bytes passed on]
        self.topic = daskworker.log_topic(job_id)
        client.subscribe_topic(self.topic, self._printed)   # before any attempt is submitted
        self.pack_data = client.scatter(pack.data, hash=False, broadcast=False)
        self.cpus = [DaskCpu(self, addr, int(w.get("nthreads") or 1)) for addr, w in sorted(info.items())]
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="geryon-dask-watch", daemon=True)
        self._watcher.start()

    def alive(self, address: str) -> bool:
        return address in self.live

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL):
            try:
                now = set(workers_of(self.client))
            except Exception:   # the scheduler is gone: every attempt is lost
                now = set()
            gone = self.live - now
            if gone:
                self.live -= gone
                self._lose(gone)

    def _lose(self, workers: set[str]) -> None:
        with self._lock:
            lost = [(k, v) for k, v in self._attempts.items() if v[0] in workers]
        for key, (addr, dfut, fut) in lost:
            _settle(fut, exc=WorkerLost(f"Dask worker {addr} left the cluster"))
            dfut.cancel()

    def _printed(self, event: tuple[float, Any]) -> None:
        """An attempt's printed output, streamed while it runs (`daskworker.pump`): passed on in
        order, once (a piece that comes after its attempt's end is dropped: the result had it)."""
        msg = event[1]
        if not isinstance(msg, dict):
            return
        with self._lock:
            stream = self._streams.get(str(msg.get("attempt")))
            offset, data = msg.get("offset"), msg.get("data")
            if stream is None or not isinstance(offset, int) or not isinstance(data, bytes):
                return
            new = data[max(0, stream[1] - offset):]
            stream[1] = max(stream[1], offset + len(data))
        if new:
            _call_quietly(stream[0], new)

    def submit(self, cpu: "DaskCpu", task: MapTask | ReduceTask,
               on_log: OnLog | None = None) -> cf.Future[TaskResult]:
        ours: cf.Future[TaskResult] = cf.Future()
        # Running from the start: a driver ending the job waits for it (`cancel` cannot drop it
        # while its Dask task may still write), and `cf.wait` sees it end.
        ours.set_running_or_notify_cancel()
        if not self.alive(cpu.address):
            ours.set_exception(WorkerLost(f"Dask worker {cpu.address} left the cluster"))
            return ours
        key = f"geryon-{self.job_id}-{task.attempt_id}"
        dirs = dict(self.dirs) if isinstance(task, ReduceTask) else self.input_dirs
        dfut = self.client.submit(daskworker.run_attempt, self.job_id, self.pack.digest, self.pack_data,
                                  task.to_json(), self.shuffle, dirs, self.step, key=key, workers=[cpu.address],
                                  allow_other_workers=False, pure=False, retries=0)
        with self._lock:
            self._attempts[key] = (cpu.address, dfut, ours)
            self._streams[str(task.attempt_id)] = [on_log, 0]
        dfut.add_done_callback(lambda f: self._ended(key, str(task.attempt_id), f))
        return ours

    def _ended(self, key: str, aid: str, dfut: Any) -> None:
        with self._lock:
            _, _, ours = self._attempts.pop(key, (None, None, None))
            on_log, delivered = self._streams.pop(aid, (None, 0))
        if ours is None or ours.done():
            return
        try:
            out = dfut.result()
        except BaseException as exc:   # cancelled, or the task raised (a bug of ours, or its worker died)
            _settle(ours, exc=WorkerLost(f"{type(exc).__name__}: {exc}"))
            return
        result = TaskResult.from_json(out)
        rest = daskworker.stream_rest(delivered, int(out.get("log_start") or 0), str(out.get("log") or ""),
                                      int(out.get("log_size") or 0))
        if rest and on_log is not None:   # what was not streamed, before the attempt ends
            _call_quietly(on_log, rest)
        elif rest:
            result.log = rest.decode("utf-8", errors="replace")
        self.dirs.setdefault(str(out.get("address")), [str(out.get("host")), str(out.get("dir"))])
        _settle(ours, result)

    def read_file(self, address: str, name: str, dest: str) -> None:
        """Copy a job's file on a worker (a staged part) to `dest`, from the disk when it is on
        this host, else in pieces over Dask's comms.

        Raises:
            OSError: the worker or its file is gone.
        """
        where = self.dirs.get(address)
        if where is not None and self.shuffle != "transfer":
            src = os.path.join(where[1], name)
            if os.path.isfile(src):
                shutil.copyfile(src, dest)
                return
        with open(dest, "wb") as f:
            offset = 0
            while True:
                answer = self.client.sync(self._read, address, name, offset)
                if "error" in answer:
                    raise OSError(f"{address}: {answer['error']}")
                data = answer.get("data") or b""
                if not data:
                    return
                f.write(data)
                offset += len(data)

    async def _read(self, address: str, name: str, offset: int) -> dict[str, Any]:
        return await self.client.rpc(address).geryon_read(job=self.job_id, name=name, offset=offset,  # type: ignore[no-any-return]
                                                          length=daskworker.READ_PIECE)

    def forget(self) -> None:
        """Remove the job's directory on every live worker (best effort)."""
        try:
            self.client.run(daskworker.forget, self.job_id, workers=sorted(self.live))
        except Exception as exc:   # a worker gone meanwhile keeps nothing that matters
            log.debug("forgetting %s on the workers: %s", self.job_id, exc)

    def abort(self) -> None:
        with self._lock:
            running = list(self._attempts.values())
        for _, dfut, _ in running:
            dfut.cancel()

    def close(self, keep: bool = False) -> None:
        """Stop watching; remove the job's files on every worker (best effort), unless `keep`
        (a multi-step job's step whose parts the next step reads: `forget` them after)."""
        self._stop.set()
        self._watcher.join(5)
        self.abort()
        try:
            self.client.unsubscribe_topic(self.topic)
        except Exception:
            pass
        if not keep:
            self.forget()
        try:
            self.client.cancel([self.pack_data])
        except Exception:
            pass


def _call_quietly(on_log: OnLog, data: bytes) -> None:
    try:
        on_log(data)
    except Exception:   # the driver's echo or record failing must not lose the attempt's result
        log.exception("passing on an attempt's output")


def _settle(fut: cf.Future[TaskResult], result: TaskResult | None = None, exc: BaseException | None = None) -> None:
    """End an attempt's future once: the watcher (worker gone) and the task's own end may race."""
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)  # type: ignore[arg-type]
    except cf.InvalidStateError:
        pass


class DaskCpu:
    """One Dask worker as a `geryon.mapreduce.cpu.Cpu`."""

    def __init__(self, workers: DaskWorkers, address: str, slots: int) -> None:
        self.workers, self.address, self.slots = workers, address, max(1, slots)
        self.name = address

    def __repr__(self) -> str:
        return f"DaskCpu({self.address!r}, slots={self.slots})"

    def submit(self, job_id: str, task: MapTask | ReduceTask, on_log: OnLog | None = None) -> cf.Future[TaskResult]:
        return self.workers.submit(self, task, on_log)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.workers.abort()


class DaskPolicy(LocalPolicy):
    """Dask mode's rules: map outputs and staged parts on the workers, parts committed here."""

    retry_kinds = frozenset({FailureKind.SYSTEM, FailureKind.MEMORY, FailureKind.LOST, FailureKind.DISK_FULL})
    requeue_kinds = frozenset({FailureKind.FETCH})
    names_cpus = True
    max_cpu_failures = MAX_CPU_FAILURES

    def __init__(self, workers: DaskWorkers, locations: dict[str, tuple[str, tuple[str, ...]]] | None = None) -> None:
        super().__init__()
        self.workers = workers
        self.locations = dict(locations or {})   # disk name -> (URL a worker opens, its replicas' URLs)

    def begin(self, driver: Any, out_dir: str | None) -> str:
        if not out_dir:
            raise GeryonError("Dask mode needs an output directory")
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir = os.path.abspath(out_dir)
        self.job_id, self.job_name = driver.job_id, driver.job.name
        from geryon.disks.chunk import TEMP_MARK

        self.staging = f"{TEMP_MARK}{driver.job_id}"
        return self.out_dir

    def info(self) -> dict[str, Any]:
        return {"dask": self.workers.client.scheduler.address, "shuffle": self.workers.shuffle}

    def plan(self, driver: Any, disks: Sequence[Any]) -> list[MapTask]:
        """Splits planned here from each input as the workers will read it: a local path (which
        they must see), a `geryon://` disk (its copies' URLs: master, then replicas), an fsspec URL."""
        from geryon.mapreduce.policy import plan

        planned = plan(driver.job, disks, sum(c.slots for c in driver.cpus))
        tasks = []
        for i, (s, d) in enumerate(planned):
            location, alternates = self.locations.get(d.name, (d.path or "", d.replicas))
            if not location:
                raise GeryonError(f"{d.name}: Dask mode reads local paths the workers see, geryon:// disks "
                                  f"and fsspec URLs")
            tasks.append(MapTask(i, 0, s, location, "", tuple(alternates)))
        return tasks

    def map_output(self, result: TaskResult, cpu: Cpu) -> str:
        return daskworker.location_of(getattr(cpu, "address", cpu.name), self.job_id, result.output)

    def reduce_attempt(self, index: int, attempt: int, inputs: tuple[tuple[str, Any], ...]) -> ReduceTask:
        return ReduceTask(index, attempt, inputs, "", daskworker.STAGING)

    def alive(self, cpu: Cpu) -> bool:
        return self.workers.alive(getattr(cpu, "address", cpu.name))

    def owner(self, location: str, cpus: Sequence[Cpu]) -> Cpu | None:
        address, _, _ = daskworker.parse_location(location)
        return next((c for c in cpus if getattr(c, "address", None) == address), None)

    def commit(self, parts: list[tuple[TaskResult, Cpu]], report: JobReport) -> list[str]:
        """Copy every staged part here (a worker gone: `CpuLost`, its reduces run again), then
        rename them all into place (`geryon.mapreduce.outdir`)."""
        os.makedirs(os.path.join(self.out_dir, self.staging), exist_ok=True)
        staged = []
        for res, cpu in parts:
            address = getattr(cpu, "address", cpu.name)
            dest = os.path.join(self.out_dir, self.staging, os.path.basename(res.output))
            if not self.workers.alive(address):
                raise CpuLost(cpu)
            try:
                self.workers.read_file(address, res.output, dest)
            except Exception as exc:   # the worker died between its reduce and now
                log.info("staged part %s on %s unreadable: %s", res.output, address, exc)
                raise CpuLost(cpu) from exc
            staged.append(dest)
        return outdir.commit(self.out_dir, staged, self.job_id, self.job_name)

    def end(self) -> None:
        if self.out_dir:
            shutil.rmtree(os.path.join(self.out_dir, self.staging), ignore_errors=True)


class KeptPolicy(DaskPolicy):
    """A multi-step job's step before the last: its parts stay staged on their workers (`kept`:
    worker address, file in the step's job directory, bytes), named by their location, for the
    next step to read (`geryon.mapreduce.dasksteps`); nothing is committed here."""

    def __init__(self, workers: DaskWorkers, locations: dict[str, tuple[str, tuple[str, ...]]] | None = None) -> None:
        super().__init__(workers, locations)
        self.kept: list[tuple[str, str, int]] = []

    def begin(self, driver: Any, out_dir: str | None) -> str:
        self.out_dir = ""
        self.job_id, self.job_name = driver.job_id, driver.job.name
        return ""

    def commit(self, parts: list[tuple[TaskResult, Cpu]], report: JobReport) -> list[str]:
        kept = []
        for res, cpu in parts:
            address = getattr(cpu, "address", cpu.name)
            if not self.workers.alive(address):   # gone since its reduce: run it again
                raise CpuLost(cpu)
            kept.append((address, res.output, res.bytes_out))
        self.kept = kept
        return [daskworker.location_of(a, self.job_id, name) for a, name, _ in kept]


def run_dask_job(job: Any, disks: Sequence[Any], dask: Any, *, out: str | None = None, ndb: str | None = None,
                 progress: Any = None, record: Any = None, echo: Any = None, job_id: str | None = None,
                 shuffle: str = "auto", registry: Any = None) -> Any:
    """Run `job` (one step, or several: `geryon.mapreduce.dasksteps`) on a Dask cluster (`dask`:
    a `distributed.Client` or a scheduler address).

    Args:
        disks: directories the workers see, disk names from the ndb file, or Disk values.
        out: the local directory for the part files (default `./<job name>.out`).
        shuffle: how reducers read map outputs (`geryon.mapreduce.daskworker.SHUFFLES`).
        registry: the registry naming `geryon://NAME` disks (a URL or a client; default: the
            Python API's rule, `resolve_dask_inputs`).
    Returns:
        A `geryon.mapreduce.api.JobResult`.
    Raises:
        UnknownDisk, JobFailed, GeryonError (the scheduler unreachable included; a failed step's
        first line names it).
    """
    resolved, locations = resolve_dask_inputs(disks, ndb, registry)
    try:
        return _run(job, resolved, locations, dask, out, progress, record, echo, job_id, shuffle)
    finally:
        for d in resolved:     # the driver's connections to geryon:// and fsspec inputs
            if d.name in locations:
                d.fs.close()


def _run(job: Any, resolved: list[Any], locations: dict[str, tuple[str, tuple[str, ...]]], dask: Any,
         out: str | None, progress: Any, record: Any, echo: Any, job_id: str | None, shuffle: str) -> Any:
    from geryon.mapreduce.runs import JobResult, _to_stderr, _with_reader, check_outside_inputs
    from geryon.mapreduce.engine import new_job_id
    from geryon.mapreduce.jobpack import build

    job = _with_reader(job, [(d.name, d.format) for d in resolved])
    out_dir = os.path.abspath(out or os.path.join(os.getcwd(), f"{job.name}.out"))
    check_outside_inputs(resolved, out_dir)
    job_id = job_id or new_job_id(job.name)
    echo = echo if echo is not None else _to_stderr
    client, ours = connect(dask)
    try:
        if job.multi_step:
            from geryon.mapreduce.dasksteps import run_dask_steps

            return run_dask_steps(job, resolved, locations, client, run_on_workers, out_dir=out_dir,
                                  progress=progress, record=record, echo=echo, job_id=job_id, shuffle=shuffle)
        report, _, _ = run_on_workers(job, resolved, locations, client, job_id, build(job), out_dir=out_dir,
                                      progress=progress, record=record, echo=echo, shuffle=shuffle)
    finally:
        if ours:
            client.close()
    return JobResult(report)


def run_on_workers(job: Any, inputs: Sequence[Any], locations: dict[str, tuple[str, tuple[str, ...]]], client: Any,
                   job_id: str, pack: JobPack, *, out_dir: str | None, progress: Any, record: Any, echo: Any,
                   shuffle: str, step: int = 0, input_dirs: dict[str, list[str]] | None = None,
                   keep: bool = False) -> tuple[JobReport, DaskWorkers, DaskPolicy]:
    """Run one job (or one step of a multi-step job: `step` of `pack`, reading the step before's
    directories `input_dirs`) to its commit on the client's workers.

    Args:
        keep: a step before the last: its parts stay on the workers (`KeptPolicy`; the caller
            calls the returned workers' `forget` when they have been read).
    Returns:
        The report, the job's `DaskWorkers` (closed) and its policy.
    """
    from geryon.mapreduce.engine import Driver

    workers = DaskWorkers(client, job_id, pack, shuffle, step=step, input_dirs=input_dirs)
    policy = (KeptPolicy if keep else DaskPolicy)(workers, locations)
    done = False
    try:
        report = Driver(job, workers.cpus, job_id, progress=progress, record=record, echo=echo,
                        policy=policy).run(inputs, out_dir)
        done = True
    finally:
        workers.close(keep=done and keep)
    return report, workers, policy
