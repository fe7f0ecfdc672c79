"""Replicas: fill a replica chunk from its master, keep it up to date, promote it.

A sync is Inferno's updatelog/applylog over the chunk service:

1. the master's node lists every file's checksums (`sums`): a file whose size and mtime
   match its manifest entry is not read again; others are summed. New files are recorded
   in the master's manifest then and there. A recorded file whose bytes changed without
   going through Geryon (whose writes keep the manifest current) looks exactly like
   damage, so the sync stops and names it, unless told the change was meant
   (`accept_changes`: the master's manifest takes the new bytes);
2. the replica's node lists its own files the same way;
3. `plan_sync` (pure) compares the two by size and SHA-256: files to copy, to remove;
4. the replica removes what the master no longer has, then pulls each changed or new
   file straight from the master's node (`pull`: the bytes never pass through this
   process), checking size and SHA-256 before it replaces anything;
5. the replica's manifest is written last. A sync cut short leaves the old manifest, so
   reads of half-synced files fail verification rather than return new bytes under old
   sums, and the next sync simply carries on (files already copied match and are skipped).

`replicate` places a new replica on a named host (a free chunk there, or one made from its
pool) and names it in ndb (`replica=` on the master, `name=D.rK kfs master=HOST!CHUNK
replicaof=D`); `promote` makes a replica the master. Not here: choosing which copy to read
(`failover`), choosing hosts for a load (`allocate`).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from geryon.disks.allocate import Allocator, ChunkRef, locate
from geryon.disks.checksum import FileSum, manifest_to_json
from geryon.disks.diskdb import DiskEntry, find_disk, named_chunks, names_pattern, read_disks, replace_disks
from geryon.errors import GeryonError, UnknownDisk
from geryon.disks.placement import NoRoom

log = logging.getLogger(__name__)

DEFAULT_SYNC_WORKERS = 4
"""Files pulled at once by a replica during a sync."""

DEFAULT_SYNC_TIMEOUT = 600.0
"""Seconds one file's pull may take (its node copies it from the master's node)."""

DEFAULT_PROBE_TIMEOUT = 2.0
"""Seconds `promote` waits for a master to answer before counting it dead."""


class ReplicaError(GeryonError):
    """A replica could not be made, brought up to date or promoted."""


class MasterChanged(ReplicaError):
    """The master holds files whose bytes differ from their record: changed outside Geryon, or damaged."""


@dataclass(frozen=True)
class SyncPlan:
    """What a sync does: files to copy (new or different), to remove, and kept as they are."""

    copy: tuple[str, ...]
    remove: tuple[str, ...]
    keep: tuple[str, ...]


def plan_sync(master: dict[str, FileSum], replica: dict[str, FileSum]) -> SyncPlan:
    """Compare two chunks' files by size and SHA-256 (pure)."""
    copy = [k for k, s in master.items() if k not in replica or (replica[k].size, replica[k].sha256) != (s.size, s.sha256)]
    keep = [k for k in master if k not in set(copy)]
    remove = [k for k in replica if k not in master]
    return SyncPlan(tuple(sorted(copy)), tuple(sorted(remove)), tuple(sorted(keep)))


@dataclass
class SyncReport:
    """What a sync did."""

    copied: int = 0
    removed: int = 0
    kept: int = 0
    bytes_moved: int = 0
    bytes_total: int = 0
    seconds: float = 0.0


def _files(answer: dict[str, Any]) -> tuple[dict[str, FileSum], dict[str, str]]:
    files = {k: FileSum.from_json(v) for k, v in answer["files"].items()}
    states = {k: str(v.get("state", "ok")) for k, v in answer["files"].items()}
    return files, states


def sync_chunk(master: Any, replica: Any, *, label: str = "", accept_changes: bool = False, verify: bool = False,
               workers: int = DEFAULT_SYNC_WORKERS, on_file: Callable[[str, int], None] | None = None) -> SyncReport:
    """Bring `replica` (a RemoteFS, opened with a long timeout) up to date with `master`.

    `verify` reads every file on both sides instead of trusting unchanged sizes and mtimes
    (slower; finds damage that left them alone, and repairs such damage on the replica).

    Raises:
        MasterChanged: the master has changed or missing recorded files (and not `accept_changes`).
        ReplicaError: a file could not be copied (the replica stays as the last sync left it).
    """
    started = time.monotonic()
    label = label or master.geturl_base()
    answer = master.call("sums", record=True, accept=accept_changes, verify=verify)
    files, states = _files(answer)
    changed = sorted(k for k, s in states.items() if s == "changed")
    missing = list(answer.get("missing") or [])
    if (changed or missing) and not accept_changes:
        what = [f"{k.lstrip('/')}: changed since it was recorded" for k in changed]
        what += [f"{k.lstrip('/')}: missing" for k in missing]
        raise MasterChanged(
            f"{label}: {len(what)} file(s) of the master differ from its checksum manifest ({'; '.join(what[:3])}"
            f"{'; ...' if len(what) > 3 else ''}): not copying what may be damage. Check with `geryon disk check`; "
            f"if the change was meant, sync with --accept-changes")
    theirs, _ = _files(replica.call("sums", verify=verify))
    plan = plan_sync(files, theirs)
    report = SyncReport(kept=len(plan.keep), bytes_total=sum(s.size for s in files.values()))
    if plan.remove:
        replica.call("syncremove", paths=list(plan.remove))
        report.removed = len(plan.remove)

    def pull(key: str) -> tuple[str, FileSum]:
        want = files[key]
        got = replica.call("pull", source=master.url, chunk=master.chunk, path=key, size=want.size,
                           sha256=want.sha256)
        if on_file is not None:
            on_file(key, want.size)
        return key, FileSum.from_json(got)

    pulled: dict[str, FileSum] = {}
    try:
        if plan.copy:
            with ThreadPoolExecutor(max(1, min(workers, len(plan.copy))), thread_name_prefix="geryon-sync") as pool:
                for key, got in pool.map(pull, plan.copy):
                    pulled[key] = got
    except Exception as exc:
        raise ReplicaError(f"{label}: sync stopped after {len(pulled)} of {len(plan.copy)} files: {exc}") from exc
    report.copied = len(pulled)
    report.bytes_moved = sum(files[k].size for k in pulled)
    final = {k: pulled[k] if k in pulled else theirs[k] for k in files}
    replica.call("putsums", files=manifest_to_json(final))
    report.seconds = time.monotonic() - started
    log.info("%s: synced: %d copied (%d bytes), %d removed, %d kept in %.2f s", label, report.copied,
             report.bytes_moved, report.removed, report.kept, report.seconds)
    return report


# -- replicas named in ndb ------------------------------------------------------------------

@dataclass
class ReplicateReport:
    """What `replicate` did: which replica, where, whether it is new, and the sync."""

    disk: str
    replica: str
    target: ChunkRef
    created: bool
    sync: SyncReport = field(default_factory=SyncReport)


def _disk(ndb_file: str, name: str) -> DiskEntry:
    entry = find_disk(ndb_file, name)
    if entry is None:
        raise UnknownDisk(f"{name}: not named in {ndb_file}")
    if entry.replica_of:
        raise ReplicaError(f"{name} is a replica of {entry.replica_of}: name the master disk")
    return entry


def _live(registry: Any, entry: DiskEntry) -> ChunkRef | None:
    return locate(registry, entry.host, entry.chunk or entry.name)


def _next_replica_name(ndb_file: str, disk: str) -> str:
    names = {d.name for d in read_disks(ndb_file)}
    k = 1
    while f"{disk}.r{k}" in names:
        k += 1
    return f"{disk}.r{k}"


def replicate(disk: str, to_host: str, *, registry: Any, secret: bytes | None, ndb_file: str,
              accept_changes: bool = False, verify: bool = False,
              workers: int = DEFAULT_SYNC_WORKERS) -> ReplicateReport:
    """Make or update `disk`'s replica on `to_host`, and name a new one in the ndb file.

    An existing replica on that host is brought up to date (only changed files move);
    otherwise the replica goes on a free chunk of the host (registered, empty, named by no
    disk) or on a chunk made from its pool, marked read-only, filled, then named.

    Raises:
        UnknownDisk: the disk is not named, or its master is not live.
        ReplicaError: the host is the master's, has no room, or the sync failed (a new
            replica is then released: nothing is named, the chunk is emptied or deleted).
    """
    entry = _disk(ndb_file, disk)
    if entry.path is not None:
        raise ReplicaError(f"{disk} is a local disk ({entry.path}): its replicas are made by "
                           f"geryon load --replicas K")
    master = _live(registry, entry)
    if master is None:
        raise UnknownDisk(f"{disk}: master {entry.master} is not live (no node serves it): "
                          f"promote a replica first (geryon disk promote {disk})")
    if to_host == entry.host:
        raise ReplicaError(f"{disk}: {to_host} holds the master; a replica there would not survive losing it")
    target: ChunkRef | None = None
    name = ""
    for r in entry.replicas:
        rentry = find_disk(ndb_file, r)
        if rentry is not None and rentry.host == to_host:
            target = locate(registry, rentry.host, rentry.chunk or rentry.name)
            if target is None:
                raise UnknownDisk(f"{disk}: its replica {r} on {rentry.master} is not live")
            name = r
    with master.open(secret) as mfs:
        usage = mfs.usage()
        capacity = int(usage.get("capacity") or usage.get("used") or 1)
        alloc: Allocator | None = None
        created = target is None
        if target is None:
            alloc = Allocator(registry, secret, named_chunks(ndb_file))
            if to_host not in alloc.storage.hosts:
                raise ReplicaError(f"{to_host} offers no free chunk and no pool (is it a live node? "
                                   f"start it with --chunk-pool DIR, or give it an empty --disk)")
            try:
                slot = alloc.choose(capacity, 1, [to_host])[0]
            except NoRoom as exc:
                raise ReplicaError(f"{disk}: {to_host} has no free chunk or pool room for {capacity} bytes "
                                   f"({exc})") from exc
            target = alloc.claim(slot, capacity, replica=True)
            name = _next_replica_name(ndb_file, disk)
        try:
            with target.open(secret, DEFAULT_SYNC_TIMEOUT) as rfs:
                if not created:
                    rfs.call("role", replica=True)
                sync = sync_chunk(mfs, rfs, label=disk, accept_changes=accept_changes, verify=verify,
                                  workers=workers)
            if created:
                with_replica = DiskEntry(entry.name, entry.path, entry.host, (*entry.replicas, name),
                                         entry.replica_of, entry.chunk, entry.format)
                new = DiskEntry(name, None, target.host, (), disk, target.chunk, entry.format)
                replace_disks(ndb_file, names_pattern([entry.name, name]), [with_replica, new])
        except BaseException:
            if alloc is not None:
                alloc.release_all()
            raise
    return ReplicateReport(disk, name, target, created, sync)


@dataclass
class PromoteReport:
    """What `promote` did."""

    disk: str
    new_master: str
    old_master: str
    replicas_left: tuple[str, ...]


def _answers(ref: ChunkRef, secret: bytes | None) -> bool:
    from geryon.net.connection import NodeUnavailable

    try:
        with ref.open(secret, DEFAULT_PROBE_TIMEOUT) as remote:
            remote.usage()
        return True
    except (NodeUnavailable, OSError):
        return False
    except Exception:                     # the node answers but no longer serves the chunk
        return False


def promote(disk: str, *, registry: Any, secret: bytes | None, ndb_file: str, replica: str | None = None,
            force: bool = False) -> PromoteReport:
    """Make a replica of `disk` its master: writable on its node, named `master=` in ndb.

    The old master chunk is no longer named (its node keeps its files). The promoted
    replica's own entry goes; the other replicas stay replicas of the disk. A chunk made
    from a pool remembers it is writable now; one served with `--replica NAME=PATH` is
    writable until its node restarts (serve it with `--disk` from then on).

    Raises:
        ReplicaError: no live replica, or the master still answers (and not `force`:
            promoting then could lose writes the replica has not seen).
    """
    entry = _disk(ndb_file, disk)
    if not entry.replicas:
        raise ReplicaError(f"{disk} has no replica to promote")
    if replica is not None and replica not in entry.replicas:
        raise ReplicaError(f"{replica} is not a replica of {disk} (its replicas: {', '.join(entry.replicas)})")
    master = _live(registry, entry)
    if master is not None and _answers(master, secret) and not force:
        raise ReplicaError(f"{disk}: master {entry.master} is live: promoting a replica could lose its newest "
                           f"writes (sync with geryon disk replicate, or pass --force)")
    candidates: Sequence[str] = [replica] if replica else entry.replicas
    chosen: tuple[DiskEntry, ChunkRef] | None = None
    tried = []
    for r in candidates:
        rentry = find_disk(ndb_file, r)
        if rentry is None:
            tried.append(f"{r}: not named")
            continue
        ref = locate(registry, rentry.host, rentry.chunk or rentry.name)
        if ref is None or not _answers(ref, secret):
            tried.append(f"{r} ({rentry.master}): not live")
            continue
        chosen = (rentry, ref)
        break
    if chosen is None:
        raise ReplicaError(f"{disk}: no live replica to promote ({'; '.join(tried)})")
    rentry, ref = chosen
    with ref.open(secret) as remote:
        remote.call("role", replica=False)
    left = tuple(r for r in entry.replicas if r != rentry.name)
    promoted = DiskEntry(entry.name, None, ref.host, left, None, ref.chunk, entry.format)
    replace_disks(ndb_file, names_pattern([entry.name, rentry.name]), [promoted])
    log.warning("%s: master is now %s (was %s)", disk, ref.where, entry.master)
    return PromoteReport(disk, ref.where, entry.master, left)
