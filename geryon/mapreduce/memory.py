"""A task process's memory: its peak RSS, the limit it lives under, and the kernel's OOM kills.

`reset_peak` and `peak_rss` measure one task's peak resident memory (Linux: VmHWM, reset
through /proc/self/clear_refs, so a process that runs several tasks reports each one's own
peak). `memory_limit` is the memory a job on this machine may use: the smallest limit of
this process's memory cgroup and its ancestors (cgroup v1 `memory.limit_in_bytes`, v2
`memory.max`), else the machine's RAM. `oom_kills` counts the kernel's out-of-memory kills
where this process lives (its memory cgroup's `oom_kill` counter, else /proc/vmstat's), so
that a task process that died of SIGKILL while the count rose is named as killed for memory
(no dmesg needed). `volunteer_for_oom` makes a task process the kernel's first choice, so
the driver or node daemon that started it survives to say so.

Not here: what a task does with its budget (`sortbuffer`, `aggregate`), or retries (`engine`).
"""
from __future__ import annotations

import logging
import os
import resource
from dataclasses import dataclass

from geryon.disks.chunk import describe_size

log = logging.getLogger(__name__)

TASK_OVERHEAD = 64 << 20
"""Memory a task process uses beyond its --sort-budget: the interpreter with Geryon's modules and
the job's (about 40 MiB), the input block being read, a spill's key lists, the block being
encoded (measured peaks 16-37 MiB above the budget: bench/README.md, Memory). What a map
builds from one record of its own (word count: about ten times the record) comes on top."""

OOM_SCORE_ADJ = 500
"""What a task process adds to its OOM score (-1000..1000), so the kernel kills it before its parent."""

_CGROUP_ROOTS = ("/sys/fs/cgroup/memory", "/sys/fs/cgroup")
_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class Limit:
    """A memory limit and where it comes from ("cgroup /path" or "RAM")."""

    nbytes: int
    source: str


def reset_peak() -> None:
    """Start measuring a new peak: the peak RSS becomes the current RSS (Linux clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss() -> int:
    """This process's peak resident memory in bytes since start or `reset_peak` (0 if unknown)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (OSError, ValueError):
        return 0


def current_rss() -> int:
    """This process's resident memory now, in bytes (0 if unknown)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def volunteer_for_oom(adj: int = OOM_SCORE_ADJ) -> None:
    """Raise this process's OOM score (allowed unprivileged), so the kernel picks it first."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(adj))
    except OSError:
        pass


def memory_cgroup(pid: str = "self") -> str | None:
    """The directory of a process's memory cgroup (v1 `memory` controller, else v2), or None."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    v1 = v2 = None
    for line in lines:
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "memory" in controllers.split(","):
            v1 = path
        elif hid == "0" and controllers == "":
            v2 = path
    if v1 is not None:
        d = _existing(_CGROUP_ROOTS[0], v1)
        if d is not None:
            return d
    if v2 is not None:
        d = _existing(_CGROUP_ROOTS[1], v2)
        if d is not None and os.path.exists(os.path.join(d, "memory.events")):
            return d
    return None


def _existing(root: str, path: str) -> str | None:
    # Inside a cgroup namespace the path may be "/" and the mount the cgroup itself.
    d = os.path.join(root, path.lstrip("/"))
    return d if os.path.isdir(d) else (root if os.path.isdir(root) and os.path.exists(
        os.path.join(root, "cgroup.procs")) else None)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == "max":
        return _UNLIMITED
    try:
        return int(text)
    except ValueError:
        return None


def _ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return _UNLIMITED


def memory_limit(pid: str = "self") -> Limit:
    """The memory this process may use: its cgroup's (or an ancestor's) limit, else the RAM."""
    best = Limit(_ram(), "RAM")
    d = memory_cgroup(pid)
    root_hit = False
    while d is not None and not root_hit:
        for name in ("memory.limit_in_bytes", "memory.max"):
            n = _read_int(os.path.join(d, name))
            if n is not None and n < best.nbytes:
                best = Limit(n, f"cgroup {d}")
        parent = os.path.dirname(d)
        root_hit = d in _CGROUP_ROOTS or not os.path.exists(os.path.join(parent, "cgroup.procs"))
        d = parent
    return best


def oom_kills(pid: str = "self") -> int:
    """How many processes the kernel has killed for memory where this one lives.

    Its memory cgroup's count (v1 `memory.oom_control`, v2 `memory.events`) when there is
    one, since the machine-wide count (/proc/vmstat) also counts other users' processes.
    """
    d = memory_cgroup(pid)
    if d is not None:
        for name in ("memory.events", "memory.oom_control"):
            n = _field(os.path.join(d, name), "oom_kill")
            if n is not None:
                return n
    return _field("/proc/vmstat", "oom_kill") or 0


def _field(path: str, name: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k == name:
                    return int(v)
    except (OSError, ValueError):
        pass
    return None


describe = describe_size
"""A size for messages: 1.0 GiB, 300 MiB (`geryon.disks.chunk.describe_size`)."""


def killed_message(task: str, budget: int, limit: Limit | None = None) -> str:
    """The one line for a task the kernel killed for memory."""
    where = f" (limit {describe(limit.nbytes)}, {limit.source})" if limit is not None else ""
    return (f"task {task} was killed by the kernel for memory{where}, with --sort-budget {describe(budget)}: "
            f"lower --sort-budget or -j")


def budget_problem(budget: int, limit: Limit | None = None, overhead: int = TASK_OVERHEAD) -> str | None:
    """Why a task with this budget cannot fit in the memory there is (None: it can)."""
    limit = limit or memory_limit()
    if budget + overhead <= limit.nbytes:
        return None
    return (f"--sort-budget {describe(budget)} does not fit in the memory this job may use: "
            f"{describe(limit.nbytes)} ({limit.source}), and a task needs its budget plus "
            f"{describe(overhead)}: lower --sort-budget")
