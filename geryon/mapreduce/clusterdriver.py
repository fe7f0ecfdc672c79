"""Cluster mode: one job across the registry's cpus and disks, surviving faults.

The driver runs where the command runs. Given the cpus (`svc rstyx`) and disks (ndb names
the registry publishes, or `geryon://` URLs) found in the registry, it plans splits exactly as
local mode does, ships the job as a content-addressed pack (files, never pickles), and
runs attempts on the node daemons' job service (`geryon.node.jobservice`) over one
WebSocket each. Scheduling is pull-based: each cpu has `ncpu` slots; a free slot takes
the pending map whose input lives on its own node if there is one (locality), else the
next one; reduces start when every map output is in place.

Faults. Every attempt has an id (`m3.a1`) and writes under its own name; the driver
accepts the first successful result of each task and ignores any other (a node declared
dead cannot deliver anything: its results are dropped). An attempt that is lost (its
node died, missed the lease, or its worker was killed) or hit a full disk is tried
again on another cpu, up to `max_attempts` in all; a cpu that failed 3 attempts is
excluded. When a node dies, its completed map outputs die with it: those maps run
again, and reducers read the new attempt's output (a reducer that cannot fetch a map
output reports the location, which sends that map back to the queue). Input reads fail
over from the master chunk to its replicas (in the worker). Part files are staged on
the reducer's node and renamed into place only when every reduce succeeded; with
`out_dir`, they are then copied to a local directory and renamed there all at once.
The registry is only read when the job starts (and while it is planned, when no known copy
of a disk can be read: a restarted registry may not have every replica back yet), so a
registry restart mid-job changes nothing. Not here: finding cpus and disks (`geryon.cluster.members`), the requests to nodes
(`geryon.mapreduce.jobnodes`), the tasks' own code (maptask, reducetask), or the node side.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from geryon.mapreduce import counters as counters_mod
from geryon.attempt import AttemptId, AttemptState, FailureKind, classify
from geryon.disks.chunk import TEMP_MARK
from geryon.disks import Disk
from geryon.mapreduce.engine import DEFAULT_MAX_ATTEMPTS, JobReport, Progress, _Silent, check_job_name, plan
from geryon.errors import GeryonError, JobFailed, UnknownDisk
from geryon.mapreduce.job import Job
from geryon.mapreduce.jobpack import JobPack
from geryon.mapreduce.task import MapTask, ReduceTask, TaskResult
from geryon.mapreduce.jobnodes import NodeError, Nodes
from geryon.cluster.members import ClusterCpu, ClusterDisk, authority_of
from geryon.disks.outputs import OUTPUT_CHUNK, part_name, success_manifest
from geryon.node.worker import data_prefix
from registry.errors import RegistryError

log = logging.getLogger(__name__)

DEFAULT_LEASE = 5.0
"""Seconds a node may stay silent before its attempts are given up (DESIGN: dead after 5 s)."""

PICKS = ("rr", "load")
"""How a free slot is offered work when no map's input is on its node: round robin over the
cpus (the seed's rule), or the least busy cpu first (dsh's idea, by running attempts per slot)."""

MAX_CPU_FAILURES = 3
"""Failed attempts after which a cpu is excluded from the job."""

EXTRA_FETCH_ROUNDS = 8
"""Attempts a task may spend beyond `max_attempts` on inputs lost with their node or silent."""

LOCALITY_WAIT = 3.0
"""Seconds a map waits for a slot on a node holding its input before another node may take
it (delay scheduling, as Hadoop and Spark do: a remote read costs a request per file)."""

PLAN_TIMEOUT = 10.0
"""Seconds a disk's node has to list the disk when the job is planned."""

REFIND_WAIT = 6.0
"""Seconds a job being planned keeps asking the registry for a readable copy of a disk whose
known copies all failed (a restarted registry holds only the entries re-announced so far;
DESIGN: back within 3 s)."""

REFIND_PAUSE = 0.25
"""Seconds between two such questions."""

UNREACHABLE_PAUSE = 1.0
"""Seconds before a map whose input no node served is tried again."""


def _lists(fs: Any) -> bool:
    """Can this disk still be listed?"""
    try:
        fs.listdir("/")
        return True
    except Exception:  # any failure: the copy is not usable
        return False


# -- the driver -------------------------------------------------------------------------------

@dataclass
class _Task:
    key: tuple[str, int]
    attempts: int = 0          # attempt ids handed out so far
    failures: int = 0          # failed attempts that count toward max_attempts
    fetch_rounds: int = 0      # attempts spent on inputs lost with their node, or silent
    tried: set[str] = field(default_factory=set)
    not_before: float = 0.0    # monotonic time before which it is not dispatched again
    queued: float = 0.0        # monotonic time it (last) became dispatchable

    @property
    def id(self) -> str:
        return f"{self.key[0]}{self.key[1]}"


@dataclass
class _Running:
    task: _Task
    attempt: int
    cpu: ClusterCpu
    started: float


class ClusterDriver:
    """Runs one job to its commit on a cluster's cpus.

    Args:
        job: the job (its steps must live in script files: they travel as a pack).
        cpus: the cpus to use.
        job_id: the job's id (names its temporary data on every node).
        secret: the cluster secret.
        progress: what to tell about the job as it runs.
        record: a `geryon.mapreduce.jobstore.JobRecord` keeping the job's metadata, or None.
        lease: seconds a silent node keeps its attempts.
        echo: called with each line of task stderr, prefixed with the attempt's id.
        out_disks: each host's output chunks (`members.find_output_disks`); a host without
            any writes into its node's work directory.
        refind: a disk's locations asked of the registry again (`members.find_disk`), used
            when none of the known copies can be read; None: give up at once.
        refind_wait: seconds to keep asking `refind` for a copy not yet tried.
    """

    def __init__(self, job: Job, cpus: Sequence[ClusterCpu], job_id: str, secret: bytes | None, *,
                 pack: JobPack | None = None, progress: Progress | None = None, record: Any = None,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, lease: float = DEFAULT_LEASE,
                 echo: Callable[[str], None] | None = None, pick: str = "rr",
                 locality_wait: float = LOCALITY_WAIT, out_disks: dict[str, tuple[str, ...]] | None = None,
                 refind: Callable[[str], ClusterDisk] | None = None, refind_wait: float = REFIND_WAIT) -> None:
        if not cpus:
            raise GeryonError("no cpus in the registry (start `geryon node` on the machines)")
        self.job = job
        self.cpus = list(cpus)
        self.job_id = job_id
        self.secret = secret
        self.progress = progress or _Silent()
        self.record = record
        self.max_attempts = max_attempts
        self.lease = lease
        self.echo = echo
        if pick not in PICKS:
            raise GeryonError(f"unknown pick {pick!r} (choose from {', '.join(PICKS)})")
        self.pick = pick
        self.locality_wait = locality_wait
        self.out_disks = dict(out_disks or {})
        self.refind = refind
        self.refind_wait = refind_wait
        self.locations: dict[str, tuple[str, ...]] = {}
        self._unlistable: set[str] = set()
        self._out_last: dict[str, str] = {}
        if pack is None:
            from geryon.mapreduce.jobpack import build
            pack = build(job)
        self.pack = pack

    # -- public -------------------------------------------------------------------------------
    def run(self, disks: Sequence[ClusterDisk], out_dir: str | None = None) -> JobReport:
        started = time.monotonic()
        job = self.job
        check_job_name(job.name)
        fmt = "text" if job.reduce is not None and job.reduce.streaming else job.format
        report = JobReport(self.job_id, job.name, os.path.abspath(out_dir) if out_dir else "", [], fmt)
        self.nodes = Nodes(self.secret, self.lease)
        self.nodes.hold(self.cpus, self.job_id)   # the nodes drop our intermediate data if we die
        try:
            self._prepare(disks)
            self._schedule(report)
            report.parts = self._finish(report, out_dir)
        finally:
            self.nodes.forget(self.cpus, self.job_id)
            self.nodes.close()
        report.seconds = time.monotonic() - started
        return report

    # -- planning -----------------------------------------------------------------------------
    def _prepare(self, disks: Sequence[ClusterDisk]) -> None:
        """Plan the splits from a readable copy of every disk.

        A copy that cannot be listed, or whose node dies while the plan reads it, is left
        for the next one; when every known copy failed, the registry is asked again for a
        while (`refind`: after a registry restart, a replica may not be re-announced yet).
        """
        bad: set[str] = set()
        while True:
            planned_disks: list[Disk] = []
            try:
                for d in disks:
                    planned_disks.append(self._readable_copy(d, bad))
                planned = plan(self.job, planned_disks, sum(c.slots for c in self.cpus))
                break
            except UnknownDisk:
                raise
            except Exception as exc:
                failed = [d for d in planned_disks if not _lists(d.fs)]
                if not failed:
                    raise
                for d in failed:
                    loc = self.locations[d.name][0]
                    bad.add(loc)
                    self._event(f"{d.name}: {loc} failed while planning ({exc}); planning from the next replica")
            finally:
                for d in planned_disks:
                    d.fs.close()
        self._unlistable = bad
        self.maps = [MapTask(i, 0, s, self.locations[d.name][0], "", self.locations[d.name][1:])
                     for i, (s, d) in enumerate(planned)]
        self.input_bytes = sum(s.size for s, _ in planned)
        if self.record is not None:
            self.record.update_info({"maps": len(self.maps), "cpus": [c.name for c in self.cpus],
                                     "pack": self.pack.digest})

    def _readable_copy(self, d: ClusterDisk, bad: set[str]) -> Disk:
        """A `Disk` on the first copy of `d` that lists (not in `bad`); sets `self.locations`."""
        from geryon.disks.remote import RemoteFS, parse_node_url

        last: Exception | None = None
        locations = d.locations
        deadline = time.monotonic() + self.refind_wait
        while True:
            for i, loc in enumerate(locations):
                if loc in bad:
                    continue
                node, chunk = parse_node_url(loc)
                fs = RemoteFS(node, chunk, self.secret, timeout=PLAN_TIMEOUT)
                try:
                    fs.listdir("/")
                except Exception as exc:  # a dead or damaged copy: plan from the next one
                    fs.close()
                    bad.add(loc)
                    last = exc
                    self._event(f"{d.name}: {loc} unreadable ({exc}); planning from the next replica")
                    continue
                self.locations[d.name] = tuple(x for x in locations[i:] if x not in bad)
                return Disk(d.name, fs, only=d.only)
            if self.refind is None or time.monotonic() >= deadline:
                raise UnknownDisk(f"{d.name}: no location of the disk can be read: {last}")
            time.sleep(REFIND_PAUSE)
            try:
                fresh = self.refind(d.name)
            except (GeryonError, RegistryError):   # not back yet: ask again
                continue
            if any(loc not in bad for loc in fresh.locations):
                locations = fresh.locations

    # -- scheduling ---------------------------------------------------------------------------
    def _schedule(self, report: JobReport) -> None:
        job = self.job
        M, R = len(self.maps), job.partitions
        now = time.monotonic()
        self.tasks = {("m", i): _Task(("m", i), queued=now) for i in range(M)}
        self.tasks.update({("r", r): _Task(("r", r), queued=now) for r in range(R)})
        self.pending: list[tuple[str, int]] = [("m", i) for i in range(M)] + [("r", r) for r in range(R)]
        self.map_done: dict[int, tuple[TaskResult, ClusterCpu]] = {}
        self.reduce_done: dict[int, tuple[TaskResult, ClusterCpu]] = {}
        self.running: dict[cf.Future[TaskResult], _Running] = {}
        self.dead: set[str] = set()
        self.unreadable: set[str] = set()   # input copies an attempt could not read: tried last
        self._refound: set[str] = set()     # disks whose copies were asked of the registry again
        self.excluded: set[str] = set()
        self.cpu_failures: dict[str, int] = {}
        self.busy = {c.url: 0 for c in self.cpus}
        self.slowest: list[tuple[float, str, str]] = []
        self.committed: dict[int, tuple[ClusterCpu, str, str]] = {}   # r -> (cpu, part, where)
        self._last_failure = ""
        self._rr = 0
        self._report = report
        self.progress.phase("map", M, self.input_bytes)
        self._phase = "map"
        self._t0 = time.monotonic()
        self._drain()
        report.reduce.seconds = time.monotonic() - self._t0
        report.map.tasks, report.reduce.tasks = M, R

    def _drain(self) -> None:
        """Dispatch and collect attempts until every reduce has a result and nothing runs."""
        M, R = len(self.maps), self.job.partitions
        try:
            while len(self.reduce_done) < R or self.running:
                if len(self.map_done) == M and self._phase == "map":
                    self._report.map.seconds = time.monotonic() - self._t0
                    self._t0 = time.monotonic()
                    self._phase = "reduce"
                    self.progress.phase("reduce", R, self._shuffle_bytes())
                self._dispatch()
                if not self.running:
                    if len(self.reduce_done) == R:
                        break
                    if not any(self._usable(c) for c in self.cpus):
                        raise JobFailed(self._no_cpus_message())
                    time.sleep(0.1)   # tasks wait (a pause after an unreachable input, locality)
                    continue
                done, _ = cf.wait(list(self.running), timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    self._completed(fut, self.running.pop(fut))
        except BaseException:
            for fut in self.running:
                fut.cancel()
            raise

    def _shuffle_bytes(self) -> int:
        return sum(s.length for res, _ in self.map_done.values() for s in res.segments)

    def _usable(self, cpu: ClusterCpu) -> bool:
        return cpu.url not in self.dead and cpu.url not in self.excluded

    def _no_cpus_message(self) -> str:
        gone = [c.name for c in self.cpus if not self._usable(c)]
        msg = f"no usable cpu left for {len(self.pending)} pending task(s): {', '.join(gone)} dead or excluded"
        return msg + (f"; last failure: {self._last_failure}" if self._last_failure else "")

    def _dispatch(self) -> None:
        maps_complete = len(self.map_done) == len(self.maps)
        n = len(self.cpus)
        order = [self.cpus[(self._rr + i) % n] for i in range(n)]
        self._rr = (self._rr + 1) % n
        if self.pick == "load":  # least loaded first: busy share of its slots, then its load at start
            order.sort(key=lambda c: (self.busy[c.url] / c.slots, c.load))
        usable = [c for c in order if self._usable(c)]
        progress = True
        while progress and self.pending:
            progress = False
            for cpu in usable:          # one task per cpu per round: round robin
                if self.busy[cpu.url] >= cpu.slots:
                    continue
                key = self._choose(cpu, usable, maps_complete)
                if key is None:
                    continue
                self.pending.remove(key)
                self._start(self.tasks[key], cpu)
                progress = True

    def _choose(self, cpu: ClusterCpu, usable: list[ClusterCpu], maps_complete: bool) -> tuple[str, int] | None:
        fallback = None
        now = time.monotonic()
        for key in self.pending:
            if key[0] == "r" and not maps_complete:
                continue
            task = self.tasks[key]
            if task.not_before > now:
                continue
            if cpu.url in task.tried and any(c.url not in task.tried for c in usable):
                continue          # another cpu has not tried this one yet
            if key[0] == "m":
                homes = self._homes(key[1])
                if cpu.authority in homes:
                    return key    # its input is on this node
                if now - task.queued < self.locality_wait and any(
                        c.authority in homes and self._usable(c) for c in self.cpus):
                    continue      # a node holding its input may free a slot soon
            if fallback is None:
                fallback = key
                if key[0] == "r":
                    break
        return fallback

    def _live_first(self, copies: Sequence[str]) -> list[str]:
        """A map's input copies, those on dead nodes or found unreadable last (else in ndb order):
        a copy found bad once is not tried first by every later map of the job."""
        dead = {authority_of(c.url) for c in self.cpus if c.url in self.dead}
        return sorted(copies, key=lambda loc: loc in self.unreadable or authority_of(loc) in dead)

    def _homes(self, index: int) -> set[str]:
        """The nodes (host:port) holding a map's input, master and replicas."""
        task = self.maps[index]
        return {authority_of(loc) for loc in (task.root, *task.alternates)}

    def _task_json(self, task: _Task, attempt: int) -> dict[str, Any]:
        kind, index = task.key
        if kind == "m":
            m = self.maps[index]
            copies = self._live_first((m.root, *m.alternates))
            return replace(m, attempt=attempt, root=copies[0], alternates=tuple(copies[1:])).to_json()
        inputs = []
        for i in range(len(self.maps)):
            res, cpu = self.map_done[i]
            inputs.append((data_prefix(cpu.url, self.job_id) + res.output, res.segments[index]))
        return ReduceTask(index, attempt, tuple(inputs), "", "").to_json()

    def _start(self, task: _Task, cpu: ClusterCpu) -> None:
        attempt = task.attempts
        task.attempts += 1
        task.tried.add(cpu.url)
        self.busy[cpu.url] += 1
        spec = self._task_json(task, attempt)
        tag = str(AttemptId(task.id, attempt))
        where = self.maps[task.key[1]].split.describe() if task.key[0] == "m" else f"partition {task.key[1]}"
        if self.record is not None:
            self.record.attempt_started(task.id, attempt, cpu.name, where)
        (self._report.map if task.key[0] == "m" else self._report.reduce).attempts += 1

        def on_stderr(data: bytes) -> None:
            if self.record is not None:
                self.record.stderr(task.id, attempt, data)
            if self.echo is not None:
                for line in data.decode(errors="replace").splitlines():
                    self.echo(f"{tag}: {line}")

        fut = self.nodes.io.spawn(self.nodes.attempt(cpu, self.job_id, self.pack, spec, on_stderr, lambda: None,
                                                     out_chunk=self._out_chunk(cpu)))
        self.running[fut] = _Running(task, attempt, cpu, time.monotonic())
        self._counts()

    def _out_chunk(self, cpu: ClusterCpu) -> str | None:
        """The output disk of an attempt on `cpu`: its host's `*.cpu` chunks, round robin (rcpu's rule)."""
        from geryon.cluster.rcpu import next_after

        chunks = sorted(self.out_disks.get(cpu.name, ()))
        if not chunks:
            return None
        chunk = next_after(chunks, self._out_last.get(cpu.name))
        self._out_last[cpu.name] = chunk
        return chunk

    def _counts(self) -> None:
        show = getattr(self.progress, "running", None)
        if show is not None:
            show(len(self.running), sum(t.failures for t in self.tasks.values()))

    def _event(self, text: str) -> None:
        log.info("%s", text)
        if self.record is not None:
            self.record.event(text)

    def _completed(self, fut: cf.Future[TaskResult], run: _Running) -> None:
        task, cpu = run.task, run.cpu
        self.busy[cpu.url] -= 1
        tag = str(AttemptId(task.id, run.attempt))
        try:
            result = fut.result()
        except (NodeError, cf.CancelledError) as exc:
            result = TaskResult(task=task.id, attempt=run.attempt, ok=False, error_kind=classify(exc),
                                error=f"{tag} on {cpu.name} lost: {exc}")
        seconds = time.monotonic() - run.started
        if result.unreadable and task.key[0] == "m":
            new = set(result.unreadable) - self.unreadable
            if new:
                self.unreadable |= new
                self._event(f"{', '.join(sorted(new))} unreadable: later maps read another copy first")
        if cpu.url in self.dead:
            # Fencing: whatever a node declared dead says, nothing of it is used.
            self._ended(task, run, AttemptState.IGNORED, result, f"late result from {cpu.name}, declared dead")
            self._requeue_if_needed(task)
            return
        if result.ok:
            self._succeeded(task, run, result, seconds)
        else:
            self._failed(task, run, result)
        self._counts()

    def _ended(self, task: _Task, run: _Running, state: str, result: TaskResult, error: str = "") -> None:
        if self.record is not None:
            self.record.attempt_ended(task.id, run.attempt, state, error=error or result.error,
                                      records_in=result.records_in, records_out=result.records_out,
                                      bytes_in=result.bytes_in, bytes_out=result.bytes_out, output=result.output,
                                      peak_rss=result.peak_rss)

    def _done(self, key: tuple[str, int]) -> bool:
        return (self.map_done if key[0] == "m" else self.reduce_done).get(key[1]) is not None

    def _queue(self, key: tuple[str, int]) -> None:
        self.tasks[key].queued = time.monotonic()
        self.pending.append(key)

    def _requeue_if_needed(self, task: _Task) -> None:
        if not self._done(task.key) and task.key not in self.pending and \
                not any(r.task is task for r in self.running.values()):
            self._queue(task.key)

    def _succeeded(self, task: _Task, run: _Running, result: TaskResult, seconds: float) -> None:
        kind, index = task.key
        done = self.map_done if kind == "m" else self.reduce_done
        if done.get(index) is not None:
            self._ended(task, run, AttemptState.IGNORED, result, "another attempt already committed")
            return
        done[index] = (result, run.cpu)
        self._ended(task, run, AttemptState.DONE, result)
        stats = self._report.map if kind == "m" else self._report.reduce
        stats.records_in += result.records_in
        stats.records_out += result.records_out
        stats.bytes_in += result.bytes_in
        stats.bytes_out += result.bytes_out
        self.slowest.append((seconds, tag, run.cpu.name))
        self.progress.task_done(result)

    def _failed(self, task: _Task, run: _Running, result: TaskResult) -> None:
        cpu = run.cpu
        tag = str(AttemptId(task.id, run.attempt))
        self._ended(task, run, AttemptState.LOST if result.error_kind == FailureKind.LOST else AttemptState.FAILED, result)
        if result.error_kind in (FailureKind.FETCH, FailureKind.UNREACHABLE):
            if result.error_kind == FailureKind.FETCH:
                self._lost_input(result.lost_input)
            else:   # no copy of the input answered: try again in a moment
                task.not_before = time.monotonic() + UNREACHABLE_PAUSE
            task.fetch_rounds += 1
            if task.fetch_rounds > EXTRA_FETCH_ROUNDS + self.max_attempts:
                raise JobFailed(_message(result, tag, cpu) + " (its inputs kept disappearing)")
            self._event(f"{tag} on {cpu.name}: {result.error}; running it again")
            self._queue(task.key)
            return
        if task.key[0] == "m" and result.error_kind == FailureKind.INPUT and self._more_copies(task.key[1]):
            task.fetch_rounds += 1
            self._event(f"{tag} on {cpu.name}: {result.error}; the registry names another copy: running it again")
            self._queue(task.key)
            return
        if result.error_kind not in (FailureKind.LOST, FailureKind.SYSTEM, FailureKind.DISK_FULL, FailureKind.MEMORY):
            raise JobFailed(_message(result, tag, cpu))
        task.failures += 1
        self._last_failure = _message(result, tag, cpu)
        self.cpu_failures[cpu.url] = self.cpu_failures.get(cpu.url, 0) + 1
        if result.error_kind in (FailureKind.LOST, FailureKind.SYSTEM) and not self.nodes.alive(cpu):
            self._declare_dead(cpu)
        elif self.cpu_failures[cpu.url] >= MAX_CPU_FAILURES and cpu.url not in self.excluded:
            self.excluded.add(cpu.url)
            self._event(f"{cpu.name} excluded from the job after {MAX_CPU_FAILURES} failed attempts")
            self.progress.message(f"excluding {cpu.name}: {MAX_CPU_FAILURES} failed attempts")
        if task.failures >= self.max_attempts:
            raise JobFailed(_message(result, tag, cpu) + f" (after {task.failures} attempts)")
        self._event(f"{tag} on {cpu.name} failed ({result.error_kind}): {result.error}; retrying elsewhere")
        self.progress.message(f"retrying {task.id}: {result.error}")
        self._queue(task.key)

    def _more_copies(self, index: int) -> bool:
        """Every copy a map knew failed: ask the registry (once per disk, waiting a while) for
        copies the plan did not know (a replica re-announced after a registry restart), and
        give them to every map of that disk. Were there any?"""
        disk = self.maps[index].split.disk
        if self.refind is None or disk in self._refound:
            return False
        self._refound.add(disk)
        known = (set(self.locations.get(disk, ())) | {self.maps[index].root, *self.maps[index].alternates}
                 | self._unlistable)
        deadline = time.monotonic() + self.refind_wait
        while True:
            try:
                new = [loc for loc in self.refind(disk).locations if loc not in known]
            except (GeryonError, RegistryError):   # not back yet: ask again
                new = []
            if new or time.monotonic() >= deadline:
                break
            time.sleep(REFIND_PAUSE)
        if not new:
            return False
        self._event(f"{disk}: copies found since the job was planned: {', '.join(new)}")
        self.locations[disk] = (*self.locations.get(disk, ()), *new)
        self.maps = [replace(m, alternates=(*m.alternates, *new)) if m.split.disk == disk else m
                     for m in self.maps]
        return True

    def _lost_input(self, location: str) -> None:
        """A reducer could not read `location`: run its map again (and bury its node if dead)."""
        owner = next((c for c in self.cpus if location.startswith(data_prefix(c.url, self.job_id))), None)
        if owner is None:
            return
        if owner.url not in self.dead and not self.nodes.alive(owner):
            self._declare_dead(owner)
            return
        for i, (res, cpu) in list(self.map_done.items()):
            if cpu is owner and location.endswith("/" + res.output):
                del self.map_done[i]
                self._event(f"map output {location} unreadable: running m{i} again")
                self._requeue_if_needed(self.tasks[("m", i)])

    def _declare_dead(self, cpu: ClusterCpu) -> None:
        """`cpu`'s node is gone: its attempts are lost, and so is every output it held."""
        self.dead.add(cpu.url)
        lost_maps = [i for i, (_, c) in self.map_done.items() if c is cpu]
        lost_reduces = [r for r, (_, c) in self.reduce_done.items() if c is cpu]
        for i in lost_maps:
            del self.map_done[i]
            self._requeue_if_needed(self.tasks[("m", i)])
        for r in lost_reduces:
            del self.reduce_done[r]
            self.committed.pop(r, None)
            self._requeue_if_needed(self.tasks[("r", r)])
        self._event(f"{cpu.name} declared dead: {len(lost_maps)} map output(s) and "
                    f"{len(lost_reduces)} staged part(s) lost, their tasks run again")
        self.progress.message(f"{cpu.name} is dead: running {len(lost_maps)} map(s) and "
                              f"{len(lost_reduces)} reduce(s) again")

    # -- commit -------------------------------------------------------------------------------
    def _finish(self, report: JobReport, out_dir: str | None) -> list[str]:
        """Commit every part on its node, then copy them to `out_dir`; re-run what a death loses."""
        job = self.job
        while True:
            try:
                parts = self._commit_parts()
                report.urls = [where for _, _, where in parts]
                if out_dir:
                    parts = self._copy_out(parts, out_dir)
                break
            except _NodeLost as lost:
                self._declare_dead(lost.cpu)
                self._drain()
        results = [r for r, _ in list(self.map_done.values()) + list(self.reduce_done.values())]
        counters_mod.merge(report.counters, [r.counters for r in results])
        for stats, done in ((report.map, self.map_done), (report.reduce, self.reduce_done)):
            # from the accepted attempts only: a map run again after its node died counts once
            stats.records_in = sum(r.records_in for r, _ in done.values())
            stats.records_out = sum(r.records_out for r, _ in done.values())
            stats.bytes_in = sum(r.bytes_in for r, _ in done.values())
            stats.bytes_out = sum(r.bytes_out for r, _ in done.values())
        report.shuffled = self._shuffle_bytes()
        report.slowest = [(t, c, s) for s, t, c in sorted(self.slowest, reverse=True)[:5]]
        report.failed_attempts = sum(t.failures + t.fetch_rounds for t in self.tasks.values())
        report.map.tasks, report.reduce.tasks = len(self.maps), job.partitions
        return [where for _, _, where in parts]

    def _commit_parts(self) -> list[tuple[ClusterCpu, str, str]]:
        """Commit every reduce's staged part as `JOB/part-0000r` on its node, then mark each
        node's output directory with `_SUCCESS` (listing every part of the job)."""
        out = []
        for r in range(self.job.partitions):
            res, cpu = self.reduce_done[r]
            done = self.committed.get(r)
            if done is not None and done[0] is cpu:   # committed before a node died elsewhere
                out.append(done)
                continue
            staged = os.path.basename(res.output)
            try:
                info = self.nodes.post_json(cpu, f"/v1/jobs/{self.job_id}/commit", {"staged": staged, "partition": r})
            except NodeError as exc:
                if not self.nodes.alive(cpu):
                    raise _NodeLost(cpu) from exc
                raise JobFailed(f"cannot commit {part_name(r)} of {self.job_id} on {cpu.name}: {exc}") from exc
            final = str(info.get("part") or f"{self.job_id}/{part_name(r)}")
            where = f"geryon://{cpu.authority}/{info.get('disk') or OUTPUT_CHUNK}/{final}"
            out.append((cpu, final, where))
            self.committed[r] = (cpu, final, where)
            if self.record is not None:
                self.record.event(f"committed {res.attempt_id} as {where}")
        manifest = success_manifest(self.job_id, self.job.name, [w for _, _, w in out])
        for cpu in {id(c): c for c, _, _ in out}.values():
            try:
                self.nodes.post_bytes(cpu, f"/v1/jobs/{self.job_id}/success", manifest)
            except NodeError as exc:
                if not self.nodes.alive(cpu):
                    raise _NodeLost(cpu) from exc
                raise JobFailed(f"cannot mark the output of {self.job_id} on {cpu.name}: {exc}") from exc
        return out

    def _copy_out(self, parts: list[tuple[ClusterCpu, str, str]], out_dir: str) -> list[tuple[ClusterCpu, str, str]]:
        from geryon.mapreduce import outdir

        os.makedirs(out_dir, exist_ok=True)
        staging = os.path.join(out_dir, f"{TEMP_MARK}{self.job_id}")
        os.makedirs(staging, exist_ok=True)
        try:
            for r, (cpu, final, _) in enumerate(parts):
                try:
                    self.nodes.download(cpu, f"/v1/jobs/outputs/{final}", os.path.join(staging, part_name(r)))
                except NodeError as exc:
                    if not self.nodes.alive(cpu):
                        raise _NodeLost(cpu) from exc
                    raise JobFailed(f"cannot copy {final} from {cpu.name}: {exc}") from exc
            paths = outdir.commit(out_dir, [os.path.join(staging, part_name(r)) for r in range(len(parts))],
                                  self.job_id, self.job.name, [w for _, _, w in parts])
            return [(cpu, final, dst) for (cpu, final, _), dst in zip(parts, paths)]
        finally:
            shutil.rmtree(staging, ignore_errors=True)


class _NodeLost(Exception):
    def __init__(self, cpu: ClusterCpu) -> None:
        super().__init__(cpu.name)
        self.cpu = cpu


def _message(result: TaskResult, tag: str, cpu: ClusterCpu) -> str:
    msg = result.error or f"{tag} failed"
    msg += f" [attempt {tag} on cpu {cpu.name}]"
    if result.detail:
        msg += "\n" + result.detail
    return msg
