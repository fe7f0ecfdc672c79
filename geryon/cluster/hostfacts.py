"""What a node reports about itself: os, arch, cores, load average and free memory.

Parsing is pure (`parse_loadavg`, `parse_meminfo`); `read_host_facts` reads /proc (or
falls back to `os.getloadavg`) and is the only I/O. A `LoadSource` is any callable
returning `HostFacts`, so tests and `--fake-load` can replace the real one. This module
does not decide what a load means for scheduling (see `geryon.cluster.pick`).
"""
from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, replace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostFacts:
    """A snapshot of a machine: `load` is the 1-minute load average."""

    os: str
    arch: str
    ncpu: int
    load: float
    mem_free: int      # bytes available (MemAvailable)
    mem_total: int     # bytes


LoadSource = Callable[[], HostFacts]
"""Something that reports the host's facts now."""


def parse_loadavg(text: str) -> float:
    """The 1-minute load average from the text of /proc/loadavg."""
    return float(text.split()[0])


def parse_meminfo(text: str) -> tuple[int, int]:
    """(available, total) bytes from the text of /proc/meminfo."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    total = values.get("MemTotal", 0)
    free = values.get("MemAvailable", values.get("MemFree", 0))
    return free, total


def os_name() -> str:
    """The OS as Inferno names them: `Linux`, `MacOSX`, `Nt`, ... (platform.system)."""
    system = platform.system() or "unknown"
    return {"Darwin": "MacOSX", "Windows": "Nt"}.get(system, system)


def arch_name() -> str:
    """The CPU architecture as Linux's `uname -m` names it (`x86_64`, `aarch64`); 32-bit x86
    is `386` (Inferno's name). taskfs matching treats `x86_64`/`amd64` and `aarch64`/`arm64` alike."""
    machine = platform.machine() or "unknown"
    return {"AMD64": "x86_64", "amd64": "x86_64", "i686": "386", "i386": "386",
            "arm64": "aarch64"}.get(machine, machine)


def read_host_facts(ncpu: int | None = None) -> HostFacts:
    """The host's facts now; `ncpu` overrides the number of cores."""
    try:
        with open("/proc/loadavg") as f:
            load = parse_loadavg(f.read())
    except OSError:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    try:
        with open("/proc/meminfo") as f:
            free, total = parse_meminfo(f.read())
    except OSError:
        free, total = 0, 0
    return HostFacts(os_name(), arch_name(), ncpu or os.cpu_count() or 1, load, free, total)


def host_source(ncpu: int | None = None, fake_load: float | None = None) -> LoadSource:
    """A LoadSource for this machine; `fake_load` pins the load average (for tests)."""
    def source() -> HostFacts:
        facts = read_host_facts(ncpu)
        return facts if fake_load is None else replace(facts, load=fake_load)
    return source
