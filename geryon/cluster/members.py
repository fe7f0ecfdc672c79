"""The cluster as a job sees it: the registry's cpus, and each named disk's live copies.

Read once when a job starts (a registry restart mid-job changes nothing); waits a few
seconds for services that are re-announcing. Not here: running anything (`geryon.mapreduce.clusterdriver`).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from geryon.disks.copies import copies_of, named_disks
from geryon.errors import UnknownDisk

DEFAULT_SETTLE = 4.0
"""Seconds a starting job waits for disks and cpus to re-announce (DESIGN: back within 3 s)."""


@dataclass
class ClusterCpu:
    """A node's cpu service, as the registry describes it."""

    name: str
    url: str  # http://addr:port
    slots: int
    os: str = ""
    arch: str = ""
    load: float = 0.0

    @property
    def authority(self) -> str:
        return urlsplit(self.url).netloc


@dataclass(frozen=True)
class ClusterDisk:
    """An input disk: its name and the chunk URLs holding it, master first."""

    name: str
    locations: tuple[str, ...]
    only: str = ""  # a file or directory of the chunk (a job's output `/JOB`, or one part), if not all
    format: str = ""  # the record format its load recorded (the registry's `format` attribute), if any


def authority_of(url: str) -> str:
    return urlsplit(url.replace("geryon://", "http://", 1)).netloc


def find_cpus(registry: Any) -> list[ClusterCpu]:
    """Every live cpu service in the registry, in name order."""
    cpus = []
    for svc in registry.find({"svc": "rstyx"}):
        url = svc.get("url")
        if not url:
            continue
        try:
            slots = max(1, int(svc.get("ncpu") or 1))
        except ValueError:
            slots = 1
        try:
            load = float(svc.get("load") or 0) / slots
        except ValueError:
            load = 0.0
        cpus.append(ClusterCpu(svc.get("host") or svc.name, url, slots, svc.get("os") or "", svc.get("arch") or "",
                               load))
    return sorted(cpus, key=lambda c: (c.name, c.url))


def find_disk(name: str, registry: Any) -> ClusterDisk:
    """A disk argument (an ndb-named disk, or a geryon:// URL) and its live locations.

    Raises:
        UnknownDisk: the name is unknown, or neither its master nor a replica is live.
    """
    if name.startswith("geryon://"):
        # geryon://host:port/CHUNK, or a file or directory on it (a job's output, a part)
        authority, _, path = name[len("geryon://"):].partition("/")
        chunk, _, rest = path.strip("/").partition("/")
        return ClusterDisk(name, (f"geryon://{authority}/{chunk}",), "/" + rest if rest else "")
    named = named_disks(registry)
    if name not in named:
        raise UnknownDisk(f"{name}: unknown disk (not named in the cluster's ndb file)")
    chunks = {s.name: s for s in registry.find({"resource": "kfs"})}
    locations: list[str] = []
    for entry in copies_of(name, named):
        svc = chunks.get(entry.get("addr") or "")
        if svc is not None and svc.get("url"):
            locations.append(svc.get("url") or "")
    if not locations:
        entry = named[name]
        raise DiskNotLive(f"{name}: chunk {entry.get('host')}!{entry.get('chunk')} is not live "
                          f"and no replica is (no node serves it now)")
    return ClusterDisk(name, tuple(locations), format=named[name].get("format") or "")


class DiskNotLive(UnknownDisk):
    """A named disk none of whose copies is registered now (its nodes may be re-announcing)."""


def expand_names(disks: Sequence[str], registry: Any) -> list[str]:
    """Each glob (`d*.mbox`) replaced by the cluster's disk names it matches, in name order.

    Raises:
        UnknownDisk: a glob matches no disk the cluster names.
    """
    import fnmatch

    from geryon.disks.resolve import is_glob

    if not any(is_glob(d) and not d.startswith("geryon://") for d in disks):
        return list(disks)
    names = sorted({s.name for s in registry.find({"chunk": "*"})})
    out: list[str] = []
    for d in disks:
        if not is_glob(d) or d.startswith("geryon://"):
            out.append(d)
            continue
        matched = [n for n in names if fnmatch.fnmatchcase(n, d)]
        if not matched:
            raise UnknownDisk(f"{d}: no disk the cluster names matches")
        out.extend(matched)
    return out


def find_cluster(disks: Sequence[str], registry: Any, settle: float = DEFAULT_SETTLE,
                 sleep: Callable[[float], None] = time.sleep) -> tuple[list[ClusterDisk], list[ClusterCpu]]:
    """The disks' locations and the cpus, waiting up to `settle` seconds for services that
    are re-announcing (a registry that just restarted holds only the entries sent back so far).

    Raises:
        UnknownDisk: a disk is not named at all, or still has no live copy after `settle`.
        RegistryError: the registry cannot be reached after `settle`.
    """
    from registry.errors import RegistryUnavailable

    deadline = time.monotonic() + settle
    disks = expand_names([str(d) for d in disks], registry)
    while True:
        try:
            found = [find_disk(str(d), registry) for d in disks]
            cpus = find_cpus(registry)
            if cpus or time.monotonic() >= deadline:
                return found, cpus
        except (DiskNotLive, RegistryUnavailable):
            if time.monotonic() >= deadline:
                raise
        sleep(0.25)


def find_output_disks(registry: Any) -> dict[str, tuple[str, ...]]:
    """Each host's output chunks: the chunks of its live `*.cpu` disks, in disk name order.

    The seed's rule (`d<n>.cpu` are the cpus' own disks, as rcpu's `$cpudisk`). A chunk that
    the ndb file also names as a dataset (master or replica of any other disk) is never an
    output disk, whatever the names: a job must not write into data.
    """
    from geryon.disks.outputs import CPU_DISK_SUFFIX

    named = sorted(registry.find({"chunk": "*"}), key=lambda s: s.name)
    datasets = {(s.get("host"), s.get("chunk")) for s in named if not s.name.endswith(CPU_DISK_SUFFIX)}
    out: dict[str, list[str]] = {}
    for s in named:
        host, chunk = s.get("host"), s.get("chunk")
        if s.name.endswith(CPU_DISK_SUFFIX) and host and chunk and s.get("addr") and (host, chunk) not in datasets:
            if chunk not in out.setdefault(host, []):
                out[host].append(chunk)
    return {h: tuple(c) for h, c in out.items()}
