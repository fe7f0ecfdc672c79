#!/usr/bin/env python3
"""Where the inverted index's CPU goes, in one process: its map over half of a docs corpus (by
bytes), the sort buffer's adding and writing, then the R reduce tasks over two such map outputs.

    PATH=.venv/bin:$PATH python bench/index/phases.py DOCS100 [--rounds 3] [--gc default|task]

Prints CPU seconds (time.process_time) per phase and round: `user map` (examples/index/map.py's
own calls), `add` (SortBuffer.add), `finish` (writing the partitioned, sorted map output), `reduce`
(all R reduce tasks, in memory, text output) and a checksum of the parts, the same every round.
`--gc task` runs with the thresholds map and reduce tasks use (`geryon.mapreduce.taskgc`),
`default` with CPython's. The two map outputs hold the same half, so each key has two records.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from geryon.mapreduce import reducetask  # noqa: E402
from geryon.mapreduce.job import Job  # noqa: E402
from geryon.mapreduce.partition import crc32_partition  # noqa: E402
from geryon.mapreduce.sortbuffer import SortBuffer  # noqa: E402
from geryon.mapreduce.task import ReduceTask  # noqa: E402
from geryon.mapreduce.taskgc import TASK_THRESHOLD  # noqa: E402
from geryon.defaults import DEFAULT_SORT_BUDGET  # noqa: E402


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return getattr(mod, name)


def half_of(top: Path) -> list[tuple[str, str]]:
    files = []
    for root, dirs, names in os.walk(top):
        dirs.sort()
        files += [os.path.join(root, n) for n in sorted(names)]
    total, acc, texts = sum(map(os.path.getsize, files)), 0, []
    for p in files:
        with open(p, encoding="utf-8", errors="replace") as f:
            texts.append((os.path.relpath(p, top.parent), f.read()))
        acc += os.path.getsize(p)
        if acc >= total / 2:
            break
    return texts


def one_round(texts, mapf, redf, partitions: int, work: str) -> str:
    pt = time.process_time
    outs = []
    for m in range(2):
        t0 = pt()
        buf = SortBuffer(partitions, crc32_partition, None, False, DEFAULT_SORT_BUDGET, work)
        user = 0.0
        for k, v in texts:
            a = pt()
            out = list(mapf(k, v))
            user += pt() - a
            buf.add(iter(out))
        t1 = pt()
        path = os.path.join(work, f"m{m}.out")
        segs = buf.finish(path)
        print(f"  map {m}: user map {user:.2f}  add {t1 - t0 - user:.2f}  finish {pt() - t1:.2f}  "
              f"({buf.pairs_in:,} pairs, {buf.spills} spills)")
        outs.append((path, segs))
    job = Job(map=mapf, reduce=redf, partitions=partitions, format="text")
    digest = hashlib.sha256()
    a = pt()
    for r in range(partitions):
        task = ReduceTask(index=r, attempt=0, inputs=tuple((p, segs[r]) for p, segs in outs), out_root=work,
                          staging="s")
        state = reducetask._Reducing(job, task, reducetask.local_fetch)
        for data in state.python_lines():
            digest.update(data)
    print(f"  reduce: {pt() - a:.2f} ({partitions} tasks)")
    return digest.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", type=Path)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("-R", type=int, default=5)
    ap.add_argument("--gc", choices=("default", "task"), default="task")
    args = ap.parse_args()
    mapf = _load(REPO / "examples" / "index" / "map.py", "map")
    redf = _load(REPO / "examples" / "index" / "reduce.py", "reduce")
    texts = half_of(args.input)
    if args.gc == "task":
        gc.set_threshold(*TASK_THRESHOLD)
    print(f"{len(texts)} files; gc thresholds {gc.get_threshold()}; load {os.getloadavg()[0]:.1f}")
    for i in range(args.rounds):
        work = tempfile.mkdtemp(prefix="geryon-phases-")
        try:
            a = time.process_time()
            digest = one_round(texts, mapf, redf, args.R, work)
            print(f"round {i}: {time.process_time() - a:.2f} CPU s, parts {digest}")
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
