#!/usr/bin/env python3
"""Issue 14's two benchmarks: a total-order sort of gensort records, and the inverted index.

    PATH=.venv/bin:$PATH python bench/jobmodel/run.py sort  --peers PEERS --input FILE [--rounds 1]
    PATH=.venv/bin:$PATH python bench/jobmodel/run.py index --peers PEERS --input DIR  [--rounds 1]

PEERS (default bench/peers) is the directory holding the peer programs (gensort.py, sort_gnu.sh, sort_python.py,
sort_dask.py, sort_spark.py, sort_verify.py; ii_ref.py, ii_dask.py, ii_spark.py, ii_norm.py);
FILE is 10 M gensort records (`PEERS/gensort.py 10000000 FILE`), DIR a docs corpus (docs100).
`sort` runs `geryon mapreduce --total-order -R 4 -j 2 --reader lines` with examples/sort's
map.sh and reduce.sh, GNU sort, Python sorted(), Dask and PySpark (a peer whose Python module
is missing is skipped and said so); `index` runs examples/index/map.py and reduce.py with
`-j 2`, ii_ref.py, Dask and PySpark. `--systems` picks some; `--geryon CMD` runs another
checkout's geryon, `--other CMD` runs one besides as system `geryon_other` (A/B in each round). Each round runs every system once, in an order rotated per round; for
each run: wall seconds, CPU seconds (user+sys of the process tree, the figure a shared machine
distorts least) and the 1-minute load average before it; every output is checked (sort_verify.py;
ii_norm.py against the reference's), not timed. Prints a markdown table of medians.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def systems(kind: str, peers: Path, inp: Path, out: Path, geryon: list[str], extra: list[str]) -> dict[str, list[str]]:
    py = sys.executable
    if kind == "sort":
        return {
            "geryon": [*geryon, "mapreduce", "-q", "--local", "--total-order", "-R", "4", "-j", "2", "--reader",
                       "lines", *extra, str(EXAMPLES / "sort" / "map.sh"), str(EXAMPLES / "sort" / "reduce.sh"),
                       str(inp.parent), "--out", str(out)],
            "gnu_sort": ["bash", str(peers / "sort_gnu.sh"), str(inp), str(out)],
            "python_sorted": [py, str(peers / "sort_python.py"), str(inp), str(out)],
            "dask": [py, str(peers / "sort_dask.py"), str(inp), str(out)],
            "spark": [py, str(peers / "sort_spark.py"), str(inp), str(out)],
        }
    return {
        "geryon": [*geryon, "mapreduce", "-q", "--local", "-j", "2", *extra, str(EXAMPLES / "index" / "map.py"),
                   str(EXAMPLES / "index" / "reduce.py"), str(inp), "--out", str(out)],
        "ii_ref": [py, str(peers / "ii_ref.py"), str(inp), str(out)],
        "dask": [py, str(peers / "ii_dask.py"), str(inp), str(out)],
        "spark": [py, str(peers / "ii_spark.py"), str(inp), str(out)],
    }


MODULES = {"dask": "dask", "spark": "pyspark"}


def run_one(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} ... failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, load


def check(kind: str, peers: Path, inp: Path, out: Path, ref: str | None) -> str:
    if kind == "sort":
        proc = subprocess.run([sys.executable, str(peers / "sort_verify.py"), str(inp), str(out)],
                              capture_output=True, text=True)
        return proc.stdout.split()[0] if proc.stdout else "FAIL"
    proc = subprocess.run([sys.executable, str(peers / "ii_norm.py"), str(out), inp.name], capture_output=True,
                          text=True)
    return proc.stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["sort", "index"])
    ap.add_argument("--peers", type=Path, default=Path(__file__).resolve().parents[1] / "peers",
                    help="the peer programs (default: bench/peers)")
    ap.add_argument("--input", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--systems", nargs="*")
    ap.add_argument("--geryon", default="geryon", help="the geryon command (another checkout's, for an A/B)")
    ap.add_argument("--other", default="", help="another checkout's geryon command: run as system geryon_other")
    ap.add_argument("--geryon-args", default="", help="extra mapreduce arguments, e.g. '--sort-budget 512M'")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="geryon-bench-", dir=args.workdir))
    env = {**os.environ, "WORKERS": "2", "TMPDIR": str(work)}
    results: dict[str, list[tuple[float, float, float]]] = {}
    checks: dict[str, str] = {}
    try:
        names = list(systems(args.kind, args.peers, args.input, work, [], []))
        if args.other:
            names.insert(1, "geryon_other")
        chosen = [n for n in names if not args.systems or n in args.systems]
        for name in list(chosen):
            mod = MODULES.get(name)
            if mod and importlib.util.find_spec(mod) is None:
                print(f"skipped {name}: Python module {mod} not installed", flush=True)
                chosen.remove(name)
        for rnd in range(args.rounds):
            order = chosen[rnd % len(chosen):] + chosen[:rnd % len(chosen)]
            for name in order:
                out = work / f"out-{name}"
                shutil.rmtree(out, ignore_errors=True)
                out.unlink(missing_ok=True) if out.is_file() else None
                if name == "geryon_other":   # the same job, another checkout's geryon (A/B in one round)
                    cmd = systems(args.kind, args.peers, args.input, out, args.other.split(),
                                  args.geryon_args.split())["geryon"]
                else:
                    cmd = systems(args.kind, args.peers, args.input, out, args.geryon.split(),
                                  args.geryon_args.split())[name]
                wall, cpu, load = run_one(cmd, env)
                results.setdefault(name, []).append((wall, cpu, load))
                checks[name] = check(args.kind, args.peers, args.input, out, None)
                print(f"round {rnd} {name}: wall {wall:.2f}s cpu {cpu:.2f}s load {load:.1f} {checks[name]}",
                      flush=True)
                shutil.rmtree(out, ignore_errors=True)
                if out.is_file():
                    out.unlink()
        print("\n| system | wall s median (runs) | CPU s median | load before | check |\n|---|---|---|---|---|")
        for name, runs in results.items():
            walls, cpus, loads = zip(*runs)
            print(f"| {name} | {statistics.median(walls):.2f} ({', '.join(f'{w:.1f}' for w in walls)}) | "
                  f"{statistics.median(cpus):.2f} | {', '.join(f'{x:.1f}' for x in loads)} | {checks[name]} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
