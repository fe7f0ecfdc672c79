#!/usr/bin/env python3
"""What one attempt costs on Dask beyond its work: the CPU seconds of the same word count cut into
few and into many maps, on a Dask LocalCluster of 2 single-threaded workers.

    PATH=.venv/bin:$PATH python bench/dask/attempts.py --rounds 3
    PATH=.venv/bin:$PATH python bench/dask/attempts.py --rounds 3 --before ../other-checkout

The input is the same bytes both ways (the examples' disks, copied --copies times), so the extra
CPU of the many-map run is the extra attempts' start-up: (CPU many - CPU few) / (attempts many -
attempts few) is one attempt's start-up (its process, imports, pack, connections). CPU is that
of everything the run used: the geryon command and its children, the Dask workers and the attempt
processes they start. With --before DIR, each round also runs DIR's checkout (its geryon package
first on PYTHONPATH, for the command, the workers and the attempts alike), alternating which goes
first, so the two are compared at the same load.
"""
from __future__ import annotations

import argparse
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
    """CPU seconds of a process and of the children it has waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICK


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one_run(exe: str, corpus: Path, work: Path, split: str, env: dict[str, str]) -> tuple[float, int]:
    """CPU seconds of a word count on a fresh 2-worker Dask cluster, and its attempts."""
    import json

    script = (
        "import json, os, sys\n"
        "from distributed import Client, LocalCluster\n"
        f"with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=':0',"
        f" local_directory={str(work / 'dask')!r}) as c, Client(c) as cl:\n"
        "    print(json.dumps({'address': c.scheduler_address, 'pids': list(cl.run(os.getpid).values())}), flush=True)\n"
        "    sys.stdin.read()\n"
        "    print(json.dumps({'cpu': 0}), flush=True)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env, cwd=work)
    assert holder.stdout is not None and holder.stdin is not None
    info = json.loads(holder.stdout.readline())
    pids = info["pids"]
    k0, c0 = sum(proc_cpu(p) for p in pids), children_cpu()
    out = work / f"out-{time.monotonic_ns()}"
    jobs = work / "jobs"
    subprocess.run([exe, "mapreduce", "-q", str(MAP), str(REDUCE), str(corpus), "-R", "2", "--split-size", split,
                    "--out", str(out), "--jobs-dir", str(jobs), "--dask", info["address"]],
                   check=True, cwd=work, env=env)
    cpu = sum(proc_cpu(p) for p in pids) - k0 + children_cpu() - c0
    holder.stdin.close()
    holder.wait()
    listing = subprocess.run([exe, "jobs", "--jobs-dir", str(jobs), "--json"], capture_output=True, text=True,
                             check=True, env=env)
    record = json.loads(listing.stdout)[0]
    shown = subprocess.run([exe, "jobs", "--jobs-dir", str(jobs), "--json", record["id"]], capture_output=True,
                           text=True, check=True, env=env)
    attempts = len(json.loads(shown.stdout).get("attempts") or [])
    shutil.rmtree(out)
    shutil.rmtree(jobs)
    return cpu, attempts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--copies", type=int, default=8, help="copies of the examples' disks in the input")
    ap.add_argument("--few", default="4M", help="--split-size of the few-map run")
    ap.add_argument("--many", default="16K", help="--split-size of the many-map run")
    ap.add_argument("--before", help="another checkout to compare with (its geryon first on PYTHONPATH)")
    args = ap.parse_args()
    exe = shutil.which("geryon")
    if exe is None:
        sys.exit("bench/dask/attempts.py: no geryon command on PATH")
    exe = os.path.abspath(exe)
    work = Path(tempfile.mkdtemp(prefix="geryon-bench-attempts-"))
    # Bytecode cached, as a pip install has it: with PYTHONDONTWRITEBYTECODE set (this machine sets
    # it) every attempt's process compiled geryon's sources again (~0.08 CPU s each).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    corpus = work / "corpus"
    for i in range(args.copies):
        for disk in sorted((REPO / "examples" / "disks").iterdir()):
            if disk.is_dir():
                shutil.copytree(disk, corpus / f"{disk.name}.{i}", ignore=shutil.ignore_patterns("ndb", ".*"))
    envs = {"this": {**os.environ}}
    if args.before:
        envs["before"] = {**os.environ, "PYTHONPATH": os.path.abspath(args.before)}
    print(f"loadavg before: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    per: dict[str, list[float]] = {n: [] for n in envs}
    for r in range(args.rounds):
        names = list(envs) if r % 2 == 0 else list(envs)[::-1]
        for name in names:
            few = one_run(exe, corpus, work, args.few, envs[name])
            many = one_run(exe, corpus, work, args.many, envs[name])
            cost = (many[0] - few[0]) / max(1, many[1] - few[1])
            per[name].append(cost)
            print(f"round {r} {name}: few {few[0]:.2f} s CPU / {few[1]} attempts, many {many[0]:.2f} s CPU / "
                  f"{many[1]} attempts: {cost:.3f} CPU s per attempt, "
                  f"loadavg {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
    print(f"loadavg after: {Path('/proc/loadavg').read_text().strip()}")
    for name, costs in per.items():
        print(f"{name}: median {statistics.median(costs):.3f} CPU s per attempt "
              f"({', '.join(f'{c:.3f}' for c in costs)})")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
