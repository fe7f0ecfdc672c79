#!/usr/bin/env python3
"""Word count on a Dask LocalCluster of 2 single-threaded worker processes: Geryon on Dask
(`geryon mapreduce --dask`) against Geryon local mode (`--local -j 2`) and against a Dask bag
on the same cluster (bench/peers/wc_dask.py's bag: read_text, str.split, frequencies).

    PATH=.venv/bin:$PATH python bench/dask/run.py                         # $CORPUS/docs, 1 round
    PATH=.venv/bin:$PATH python bench/dask/run.py --corpus $CORPUS/docs100 --rounds 3
    PATH=.venv/bin:$PATH python bench/dask/run.py --systems dask,bag --rounds 4    # paired, order alternating

Each round runs the three in turn (the order rotates between rounds). Prints a markdown table:
wall seconds, CPU seconds of everything the run used (the geryon command and its children; the
Dask workers and the attempts they start; this process, which holds the scheduler and the bag's
client), and each output's check: the sorted `word<TAB>count` lines of every system must be
the same (sha256). Needs the `geryon` command of this checkout on PATH and the `dask` extra.
"""
from __future__ import annotations

import argparse
import hashlib
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
MAP, REDUCE = REPO / "examples" / "wordcount" / "map.py", REPO / "examples" / "wordcount" / "reduce.py"
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds of a process and of its children it has waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICK


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def digest(out: Path) -> str:
    lines: list[bytes] = []
    for p in sorted(out.iterdir()):
        if p.is_file() and (p.name.startswith("part-") or p.suffix == ".txt"):
            lines.extend(l for l in p.read_bytes().splitlines() if l)
    lines.sort()
    return hashlib.sha256(b"\n".join(lines)).hexdigest()[:12]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(os.environ.get("CORPUS", "corpus"), "docs"),
                    help="the corpus (default: $CORPUS/docs)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("-R", type=int, default=5)
    ap.add_argument("--systems", default="local,dask,bag", help="which to run, in this order (rotated per round)")
    args = ap.parse_args()
    args.corpus = os.path.abspath(args.corpus)
    exe = shutil.which("geryon")
    if exe is None:
        sys.exit("bench/dask/run.py: no geryon command on PATH")
    exe = os.path.abspath(exe)
    from distributed import Client, LocalCluster

    sys.path.insert(0, str(REPO / "bench" / "peers"))
    from wc_dask import build

    work = Path(tempfile.mkdtemp(prefix="geryon-bench-dask-"))
    # Bytecode cached, as a pip install has it: with PYTHONDONTWRITEBYTECODE set (this machine sets
    # it) every attempt's process compiled geryon's sources again (~0.08 CPU s each).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    print(f"loadavg before: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    results: dict[str, list[tuple[float, float, str]]] = {n: [] for n in args.systems.split(",")}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      local_directory=str(work / "dask")) as cluster, Client(cluster) as client:
        pids = list(client.run(os.getpid).values())

        def cluster_cpu() -> float:
            return sum(proc_cpu(p) for p in pids) + self_cpu()

        def geryon(*mode: str) -> Path:
            out = work / f"out-{time.monotonic_ns()}"
            subprocess.run([exe, "mapreduce", "-q", str(MAP), str(REDUCE), args.corpus, "-R", str(args.R),
                            "--out", str(out), *mode], check=True, cwd=work)
            return out

        def bag() -> Path:
            out = work / f"bag-{time.monotonic_ns()}"
            out.mkdir()
            build([args.corpus]).to_textfiles(str(out / "*.txt"), last_endline=True)
            return out

        runs = {"local": lambda: geryon("--local", "-j", "2"), "dask": lambda: geryon("--dask", cluster.scheduler_address),
                "bag": bag}
        order = args.systems.split(",")
        for r in range(args.rounds):
            for name in order[r % len(order):] + order[:r % len(order)]:
                c0, k0, t0 = children_cpu(), cluster_cpu(), time.monotonic()
                out = runs[name]()
                wall = time.monotonic() - t0
                cpu = children_cpu() - c0 + cluster_cpu() - k0
                results[name].append((wall, cpu, digest(out)))
                shutil.rmtree(out)
                print(f"round {r} {name}: {wall:.1f} s wall, {cpu:.1f} s CPU, "
                      f"loadavg {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"loadavg after: {Path('/proc/loadavg').read_text().strip()}")
    base = "local" if "local" in results else next(iter(results))   # the x column's reference
    local = statistics.median(w for w, _, _ in results[base])
    ref = results[base][0][2]
    print(f"\n| system | wall s median (all) | CPU s median | x {base} | check |\n|---|---|---|---|---|")
    labels = {"local": "Geryon local (`--local -j 2`)", "dask": "Geryon on Dask (`--dask`)", "bag": "Dask bag (wc_dask.py's)"}
    for name in results:
        walls = [w for w, _, _ in results[name]]
        med = statistics.median(walls)
        same = all(d == ref for _, _, d in results[name])
        print(f"| {labels[name]} | {med:.1f} ({', '.join(f'{w:.1f}' for w in walls)}) | "
              f"{statistics.median(c for _, c, _ in results[name]):.1f} | {med / local:.2f} | "
              f"{'same words and counts' if same else 'DIFFERENT'} |")
    if "dask" in results and "local" in results and len(results["dask"]) == len(results["local"]):
        pairs = [d[0] / l[0] for d, l in zip(results["dask"], results["local"])]
        print(f"\nGeryon on Dask / local, each round: {', '.join(f'{p:.2f}' for p in pairs)}")
    if "dask" in results and "bag" in results and len(results["dask"]) == len(results["bag"]):
        pairs = [b[0] / d[0] for d, b in zip(results["dask"], results["bag"])]
        cpus = [b[1] / d[1] for d, b in zip(results["dask"], results["bag"])]
        print(f"\nDask bag / Geryon on Dask, each round: wall {', '.join(f'{p:.2f}' for p in pairs)}; "
              f"CPU {', '.join(f'{p:.2f}' for p in cpus)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
