#!/usr/bin/env python3
"""Two checkouts, the same word counts, interleaved: is one driver as fast as two were?

    git worktree add --detach ../geryon-before 775fd81     # (and a .venv there: pip install -e .)
    python bench/driver_ab.py --before ../geryon-before --corpus $CORPUS/docs --rounds 5

Each round runs, for each checkout in turn (the order alternating every round, so neither
always runs on a warmer cache or a quieter minute), (1) local mode, `geryon mapreduce -q
examples/wordcount/map.py examples/wordcount/reduce.py CORPUS -j 2 --out DIR`, and (2) the
cluster benchmark (this checkout's `bench/cluster/run.py --runs 1`: a registry and 3 node
daemons of that checkout's `geryon`, its local and cluster runs). Each checkout's own `.venv/bin` comes first on
PATH. Each run's CPU seconds (user + system of every process it started, from RUSAGE_CHILDREN)
are counted beside its wall time. Prints a markdown table of medians and the median of the paired after/before ratios
(a loaded machine swings single runs; the pairs are what mean something), and checks
that both checkouts' local outputs are byte-identical.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def _env(tree: Path, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    env["PATH"] = f"{tree / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["GERYON_JOBS_DIR"] = str(work / "jobs")
    return env


def _children_cpu() -> float:
    """User + system CPU seconds of every descendant reaped so far (a run's workers included)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def local_run(tree: Path, corpus: Path, work: Path, tag: str) -> tuple[float, float]:
    """(wall s, CPU s) of one local word count."""
    out = work / f"out-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["geryon", "mapreduce", "-q", str(tree / "examples/wordcount/map.py"),
           str(tree / "examples/wordcount/reduce.py"), str(corpus), "-j", "2", "--out", str(out)]
    t0, c0 = time.monotonic(), _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(tree, work), cwd=work)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.monotonic() - t0, _children_cpu() - c0


def cluster_run(tree: Path, corpus: Path, work: Path, tag: str) -> tuple[float, float, float]:
    """(local s, cluster s, CPU s of the whole harness run) of one `bench/cluster/run.py --runs 1` of `tree`:
    the CPU counts its loading, the registry and node daemons and both runs."""
    c0 = _children_cpu()
    where = work / f"cluster-{tag}"
    shutil.rmtree(where, ignore_errors=True)
    # this checkout's harness for both (the example job is the same): only `geryon` on PATH differs
    proc = subprocess.run([str(tree / ".venv/bin/python"), str(HERE / "bench/cluster/run.py"), "--corpus", str(corpus), "--runs", "1",
                           "--work", str(where)], capture_output=True, text=True, env=_env(tree, work))
    if proc.returncode != 0:
        raise SystemExit(f"bench/cluster/run.py with {tree} failed:\n{proc.stderr[-3000:]}")
    cpu = _children_cpu() - c0
    times = json.loads((where / "result.json").read_text())["times"]
    shutil.rmtree(where, ignore_errors=True)
    return times["local"][0], times["cluster"][0], cpu


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _parts(out: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(out.glob("part-*"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, required=True, help="the other checkout (with its .venv)")
    ap.add_argument("--after", type=Path, default=HERE, help="default: this checkout")
    ap.add_argument("--corpus", type=Path, default=Path(os.environ.get("CORPUS", "corpus")) / "docs",
                    help="the corpus (default: $CORPUS/docs)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-cluster", action="store_true", help="local mode only")
    a = ap.parse_args()
    trees = {"before": a.before.resolve(), "after": a.after.resolve()}
    work = Path(tempfile.mkdtemp(prefix="geryon-driver-ab-"))
    figures: dict[str, dict[str, list[float]]] = {
        k: {"local": [], "local CPU": [], "bench local": [], "bench cluster": [], "bench CPU (all)": []} for k in trees}
    try:
        for rnd in range(a.rounds):
            order = ["before", "after"] if rnd % 2 == 0 else ["after", "before"]
            for which in order:
                s, cpu = local_run(trees[which], a.corpus.resolve(), work, which)
                figures[which]["local"].append(s)
                figures[which]["local CPU"].append(cpu)
                print(f"round {rnd} {which} local: {s:.2f}s, CPU {cpu:.2f}s, load {_load()}", file=sys.stderr, flush=True)
            if _parts(work / "out-before") != _parts(work / "out-after"):
                raise SystemExit("the two checkouts' outputs differ")
            if a.no_cluster:
                continue
            for which in order:
                lo, cl, cpu = cluster_run(trees[which], a.corpus.resolve(), work, which)
                figures[which]["bench local"].append(lo)
                figures[which]["bench cluster"].append(cl)
                figures[which]["bench CPU (all)"].append(cpu)
                print(f"round {rnd} {which} bench: local {lo:.2f}s cluster {cl:.2f}s, CPU {cpu:.2f}s, load {_load()}",
                      file=sys.stderr, flush=True)
        print(f"\n{a.rounds} rounds, corpus {a.corpus}, before {trees['before']}, after {trees['after']}\n")
        print("| figure | before median s (runs) | after median s (runs) | median of paired after/before |")
        print("|---|---|---|---:|")
        for fig in figures["before"]:
            b, f = figures["before"][fig], figures["after"][fig]
            if not b:
                continue
            ratio = statistics.median(x / y for x, y in zip(f, b))
            print(f"| {fig} | {statistics.median(b):.2f} ({' '.join(f'{x:.1f}' for x in b)}) | "
                  f"{statistics.median(f):.2f} ({' '.join(f'{x:.1f}' for x in f)}) | {ratio:.3f} |")
        (work / "result.json").write_text(json.dumps(figures))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
