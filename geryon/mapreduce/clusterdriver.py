"""Cluster mode: one job across the registry's cpus and disks, surviving faults.

The driver runs where the command runs. Given the cpus (`svc rstyx`) and disks (ndb names
the registry publishes, or `geryon://` URLs) found in the registry, it plans splits exactly as
local mode does, ships the job as a content-addressed pack (files, never pickles), and
runs attempts on the node daemons' job service (`geryon.node.jobservice`) over one
WebSocket each. Scheduling is pull-based: each cpu has `ncpu` slots; a free slot takes
the pending map whose input lives on its own node if there is one (locality), else the
next one; reduces start when every map output is in place.

The flow is the one driver's (`geryon.mapreduce.engine.Driver`); this module is its `ClusterPolicy`,
the rules that differ on a cluster, and `ClusterDriver`, the driver built with them.

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
registry restart mid-job changes nothing. Not here: the scheduling, retries, stats and
records (`geryon.mapreduce.engine`), finding cpus and disks (`geryon.cluster.members`), the requests to nodes
and the remote cpu (`geryon.mapreduce.jobnodes`), the tasks' own code (maptask, reducetask), or the
node side.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from geryon.mapreduce import outdir

from geryon.disks import remote as remotefs
from geryon.mapreduce.attempt import FailureKind
from geryon.disks.chunk import TEMP_MARK
from geryon.disks.resolve import Disk
from geryon.mapreduce.engine import DEFAULT_MAX_ATTEMPTS, CpuLost, Driver, JobReport, Policy, Progress, plan
from geryon.errors import GeryonError, JobFailed, UnknownDisk
from geryon.mapreduce.job import Job
from geryon.mapreduce.jobnodes import NodeError, Nodes, RemoteCpu
from geryon.mapreduce.jobpack import JobPack, build
from geryon.cluster.members import ClusterCpu, ClusterDisk, authority_of
from geryon.disks.outputs import OUTPUT_CHUNK, part_name, success_manifest
from geryon.mapreduce.task import MapTask, ReduceTask, TaskResult, data_prefix
from registry.errors import RegistryError
from geryon.defaults import DEFAULT_LEASE

log = logging.getLogger(__name__)

PICKS = ("rr", "load")
"""How a free slot is offered work when no map's input is on its node: round robin over the
cpus (the seed's rule), or the least busy cpu first (dsh's idea, by running attempts per slot)."""

MAX_CPU_FAILURES = 3
"""Failed attempts after which a cpu is excluded from the job."""

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


def _lists(fs: Any) -> bool:
    """Can this disk still be listed?"""
    try:
        fs.listdir("/")
        return True
    except Exception:  # any failure: the copy is not usable
        return False


# -- the policy -------------------------------------------------------------------------------

class ClusterPolicy(Policy):
    """The cluster's rules for the one driver: splits planned from a readable copy of each
    disk, attempts on the nodes' job services, a lost or silent input run again, locality,
    dead nodes fenced, parts committed on their nodes (and copied to `out_dir`).

    Args:
        nodes: the driver's connection to the nodes (its cpus' too).
        secret: the cluster secret (the plan lists disks on the nodes).
        pick: "rr" or "load": the order free slots are offered work in.
        locality_wait: seconds a map waits for a slot on a node holding its input.
        refind: a disk's locations asked of the registry again (`members.find_disk`), used
            when none of the known copies can be read; None: give up at once.
        refind_wait: seconds to keep asking `refind` for a copy not yet tried.
    """

    retry_kinds = frozenset({FailureKind.LOST, FailureKind.SYSTEM, FailureKind.DISK_FULL, FailureKind.MEMORY})
    requeue_kinds = frozenset({FailureKind.FETCH, FailureKind.UNREACHABLE})
    names_cpus = True
    max_cpu_failures: int | None = MAX_CPU_FAILURES

    def __init__(self, nodes: Nodes, secret: bytes | None, *, pack: Any = None, pick: str = "rr",
                 locality_wait: float = LOCALITY_WAIT, refind: Callable[[str], ClusterDisk] | None = None,
                 refind_wait: float = REFIND_WAIT) -> None:
        if pick not in PICKS:
            raise GeryonError(f"unknown pick {pick!r} (choose from {', '.join(PICKS)})")
        self.nodes = nodes
        self.secret = secret
        self.pack = pack
        self.pick = pick
        self.locality_wait = locality_wait
        self.refind = refind
        self.refind_wait = refind_wait
        self.locations: dict[str, tuple[str, ...]] = {}
        self.unreadable: set[str] = set()   # input copies an attempt could not read: tried last
        self._unlistable: set[str] = set()
        self._refound: set[str] = set()     # disks whose copies were asked of the registry again
        self.committed: dict[int, tuple[Any, str, str]] = {}   # r -> (cpu, part, where)
        self.out_dir = ""
        self.driver: Driver | None = None

    def _event(self, text: str) -> None:
        if self.driver is not None:
            self.driver._event(text)
        else:
            log.info("%s", text)

    # -- the job's start and end --------------------------------------------------------------
    def begin(self, driver: Driver, out_dir: str | None) -> str:
        self.driver = driver
        self.out_dir = os.path.abspath(out_dir) if out_dir else ""
        self.nodes.hold([c.info for c in driver.cpus], driver.job_id)   # the nodes drop our data if we die
        return self.out_dir

    def end(self) -> None:
        if self.driver is not None:
            self.nodes.forget([c.info for c in self.driver.cpus], self.driver.job_id)
        self.nodes.close()

    def info(self) -> dict[str, Any]:
        return {"pack": self.pack.digest} if self.pack is not None else {}

    # -- planning -----------------------------------------------------------------------------
    def plan(self, driver: Driver, disks: Sequence[ClusterDisk]) -> list[MapTask]:
        """Plan the splits from a readable copy of every disk.

        A copy that cannot be listed, or whose node dies while the plan reads it, is left
        for the next one; when every known copy failed, the registry is asked again for a
        while (`refind`: after a registry restart, a replica may not be re-announced yet).
        """
        self.driver = driver
        bad: set[str] = set()
        while True:
            planned_disks: list[Disk] = []
            try:
                for d in disks:
                    planned_disks.append(self._readable_copy(d, bad))
                planned = plan(driver.job, planned_disks, sum(c.slots for c in driver.cpus))
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
        return [MapTask(i, 0, s, self.locations[d.name][0], "", self.locations[d.name][1:])
                for i, (s, d) in enumerate(planned)]

    def _readable_copy(self, d: ClusterDisk, bad: set[str]) -> Disk:
        """A `Disk` on the first copy of `d` that lists (not in `bad`); sets `self.locations`."""
        last: Exception | None = None
        locations = d.locations
        deadline = time.monotonic() + self.refind_wait
        while True:
            for i, loc in enumerate(locations):
                if loc in bad:
                    continue
                node, chunk = remotefs.parse_node_url(loc)
                fs = remotefs.RemoteFS(node, chunk, self.secret, timeout=PLAN_TIMEOUT)
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

    def more_copies(self, maps: list[MapTask], index: int) -> list[MapTask] | None:
        """Every copy a map knew failed: ask the registry (once per disk, waiting a while) for
        copies the plan did not know (a replica re-announced after a registry restart), and
        give them to every map of that disk."""
        disk = maps[index].split.disk
        if self.refind is None or disk in self._refound:
            return None
        self._refound.add(disk)
        known = (set(self.locations.get(disk, ())) | {maps[index].root, *maps[index].alternates}
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
            return None
        self._event(f"{disk}: copies found since the job was planned: {', '.join(new)}")
        self.locations[disk] = (*self.locations.get(disk, ()), *new)
        return [replace(m, alternates=(*m.alternates, *new)) if m.split.disk == disk else m for m in maps]

    # -- attempts -----------------------------------------------------------------------------
    def order(self, cpus: Sequence[Any], busy: dict[Any, int]) -> list[Any]:
        order = list(cpus)
        if self.pick == "load":  # least loaded first: busy share of its slots, then its load at start
            order.sort(key=lambda c: (busy[c] / c.slots, c.load))
        return order

    def home(self, cpu: Any) -> str:
        return str(cpu.authority)

    def homes(self, task: MapTask) -> set[str]:
        """The nodes (host:port) holding a map's input, master and replicas."""
        return {authority_of(loc) for loc in (task.root, *task.alternates)}

    def map_attempt(self, task: MapTask) -> MapTask:
        """The map's input copies, those on dead nodes or found unreadable last (else in ndb
        order): a copy found bad once is not tried first by every later map of the job."""
        dead = {c.authority for c in self.driver.dead} if self.driver is not None else set()
        copies = sorted((task.root, *task.alternates), key=lambda loc: loc in self.unreadable or
                        authority_of(loc) in dead)
        return replace(task, root=copies[0], alternates=tuple(copies[1:]))

    def reduce_attempt(self, index: int, attempt: int, inputs: tuple[tuple[str, Any], ...]) -> ReduceTask:
        return ReduceTask(index, attempt, inputs, "", "")   # the node puts the part on its output disk

    def map_output(self, result: TaskResult, cpu: Any) -> str:
        return data_prefix(cpu.url, self.driver.job_id if self.driver is not None else "") + result.output

    def attempt_ended(self, task: MapTask | None, result: TaskResult) -> None:
        if task is not None and result.unreadable:
            new = set(result.unreadable) - self.unreadable
            if new:
                self.unreadable |= new
                self._event(f"{', '.join(sorted(new))} unreadable: later maps read another copy first")

    def alive(self, cpu: Any) -> bool:
        return bool(cpu.alive())

    def owner(self, location: str, cpus: Sequence[Any]) -> Any:
        job_id = self.driver.job_id if self.driver is not None else ""
        return next((c for c in cpus if location.startswith(data_prefix(c.url, job_id))), None)

    # -- commit -------------------------------------------------------------------------------
    def commit(self, parts: list[tuple[TaskResult, Any]], report: JobReport) -> list[str]:
        """Commit every part on its node, then copy them to `out_dir` if asked."""
        committed = self._commit_parts(parts)
        report.urls = [where for _, _, where in committed]
        if self.out_dir:
            return self._copy_out(committed, self.out_dir)
        return report.urls

    def _commit_parts(self, parts: list[tuple[TaskResult, Any]]) -> list[tuple[Any, str, str]]:
        """Commit every reduce's staged part as `JOB/part-0000r` on its node, then mark each
        node's output directory with `_SUCCESS` (listing every part of the job)."""
        assert self.driver is not None
        job_id, name, record = self.driver.job_id, self.driver.job.name, self.driver.record
        out = []
        for r, (res, cpu) in enumerate(parts):
            done = self.committed.get(r)
            if done is not None and done[0] is cpu:   # committed before a node died elsewhere
                out.append(done)
                continue
            staged = os.path.basename(res.output)
            try:
                info = self.nodes.post_json(cpu.info, f"/v1/jobs/{job_id}/commit", {"staged": staged, "partition": r})
            except NodeError as exc:
                if not cpu.alive():
                    raise CpuLost(cpu) from exc
                raise JobFailed(f"cannot commit {part_name(r)} of {job_id} on {cpu.name}: {exc}") from exc
            final = str(info.get("part") or f"{job_id}/{part_name(r)}")
            where = f"geryon://{cpu.authority}/{info.get('disk') or OUTPUT_CHUNK}/{final}"
            out.append((cpu, final, where))
            self.committed[r] = (cpu, final, where)
            if record is not None:
                record.event(f"committed {res.attempt_id} as {where}")
        manifest = success_manifest(job_id, name, [w for _, _, w in out])
        for cpu in {id(c): c for c, _, _ in out}.values():
            try:
                self.nodes.post_bytes(cpu.info, f"/v1/jobs/{job_id}/success", manifest)
            except NodeError as exc:
                if not cpu.alive():
                    raise CpuLost(cpu) from exc
                raise JobFailed(f"cannot mark the output of {job_id} on {cpu.name}: {exc}") from exc
        return out

    def _copy_out(self, parts: list[tuple[Any, str, str]], out_dir: str) -> list[str]:
        assert self.driver is not None
        job_id = self.driver.job_id
        os.makedirs(out_dir, exist_ok=True)
        staging = os.path.join(out_dir, f"{TEMP_MARK}{job_id}")
        os.makedirs(staging, exist_ok=True)
        try:
            for r, (cpu, final, _) in enumerate(parts):
                try:
                    self.nodes.download(cpu.info, f"/v1/jobs/outputs/{final}", os.path.join(staging, part_name(r)))
                except NodeError as exc:
                    if not cpu.alive():
                        raise CpuLost(cpu) from exc
                    raise JobFailed(f"cannot copy {final} from {cpu.name}: {exc}") from exc
            return outdir.commit(out_dir, [os.path.join(staging, part_name(r)) for r in range(len(parts))],
                                 job_id, self.driver.job.name, [w for _, _, w in parts])
        finally:
            shutil.rmtree(staging, ignore_errors=True)


class ClusterDriver(Driver):
    """The one driver, on a cluster's cpus by the cluster's policy.

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
        refind, refind_wait, pick, locality_wait: as `ClusterPolicy`.
        pack, step: the pack to send (default: built from `job`); for a multi-step job's pack
            (`jobpack.build` of its steps), the step (from 0) this job is.
    """

    def __init__(self, job: Job, cpus: Sequence[ClusterCpu], job_id: str, secret: bytes | None, *,
                 pack: JobPack | None = None, progress: Progress | None = None, record: Any = None,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, lease: float = DEFAULT_LEASE,
                 echo: Callable[[str], None] | None = None, pick: str = "rr",
                 locality_wait: float = LOCALITY_WAIT, out_disks: dict[str, tuple[str, ...]] | None = None,
                 refind: Callable[[str], ClusterDisk] | None = None, refind_wait: float = REFIND_WAIT,
                 step: int = 0) -> None:
        if not cpus:
            raise GeryonError("no cpus in the registry (start `geryon node` on the machines)")
        pack = pack if pack is not None else build(job)
        nodes = Nodes(secret, lease)
        out_disks = dict(out_disks or {})
        remote = [RemoteCpu(c, nodes, pack, out_disks.get(c.name, ()), step=step) for c in cpus]
        policy = ClusterPolicy(nodes, secret, pack=pack, pick=pick, locality_wait=locality_wait, refind=refind,
                               refind_wait=refind_wait)
        super().__init__(job, remote, job_id, progress=progress, max_attempts=max_attempts, record=record,
                         echo=echo, policy=policy)
        self.cluster = policy

    @property
    def locations(self) -> dict[str, tuple[str, ...]]:
        """Each disk's copies the plan read, the one planned from first."""
        return self.cluster.locations
