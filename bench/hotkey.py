#!/usr/bin/env python3
"""One key with millions of values: the reduce task's peak memory must stay under its budget.

Builds a disk whose map output gives KEY `hot` N values (default 10,000,000), runs a job whose
reduce streams through them (counting, never collecting), and reports each task's peak RSS
(read from /proc in the worker) against --sort-budget.

    python bench/hotkey.py [N] [BUDGET]        # e.g. python bench/hotkey.py 10000000 64M
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import geryon
from geryon.disks.chunk import parse_size


def hot_map(key, value):
    n = int(value)
    for i in range(n):
        yield "hot", i
    yield "cold", n


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def count_values(key, values):
    # Reset the kernel's high-water mark, so the peak measured is this key's streaming alone.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kb("VmRSS")
    n = 0
    for _ in values:
        n += 1
    geryon.increment_counter("rss_kb", f"{key}-before", before)
    geryon.increment_counter("rss_kb", f"{key}-peak", _status_kb("VmHWM"))
    return n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    budget = parse_size(sys.argv[2]) if len(sys.argv) > 2 else 64 << 20
    with tempfile.TemporaryDirectory() as tmp:
        disk = os.path.join(tmp, "in")
        os.makedirs(disk)
        files = 4
        for f in range(files):
            with open(os.path.join(disk, f"part{f}"), "w") as out:
                out.write(str(n // files))
        job = geryon.Job(map=hot_map, reduce=count_values, partitions=1, sort_budget=budget, name="hotkey")
        t = time.monotonic()
        result = job.run([disk], out=os.path.join(tmp, "out"), workers=2)
        seconds = time.monotonic() - t
        got = dict(result)
        assert got["hot"] == n // files * files, got
        rss = result.counters.get("rss_kb", {})
        print(f"values for the hot key: {got['hot']:,}; sort budget {budget >> 20} MiB; {seconds:.1f}s")
        print(f"  reduce worker RSS when the hot key's values start: {rss['hot-before'] / 1024:.0f} MiB")
        print(f"  reduce worker peak RSS while streaming them:       {rss['hot-peak'] / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
