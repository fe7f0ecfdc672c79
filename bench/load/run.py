#!/usr/bin/env python3
"""`geryon load --cluster` against a local `geryon load` of the same files, on this machine.

    PATH=.venv/bin:$PATH python bench/load/run.py            # 1,000 and 2,000 files of 3 KB, 17,738 of 7.2 KB (128 MB)
    PATH=.venv/bin:$PATH python bench/load/run.py --sets 4000:3000 --runs 5
    PATH=.venv/bin:$PATH python bench/load/run.py --sets 17738:7200 --other ../before   # A/B: another checkout's cluster load too

Makes a directory of N small text files (500 per folder), then loads it (`--app b`, 64 MiB chunks) with
`geryon load --to DIR` and with `geryon load --cluster` into a real registry and one node
daemon on loopback offering a chunk pool, alternating (local first in odd runs, cluster first in
even ones; after one untimed load of each, which also compiles the bytecode, kept in the run's
temporary directory, each load replaces the one before it, locally and on the cluster, so both
remove the old disks' files; `sync` before each timed load), and prints a markdown table:
wall seconds (median), the median of each run's
cluster/local ratio (paired: both loads of a run see about the same machine), CPU seconds (the
`geryon load` process; for the cluster load also what the node and registry daemons spent
meanwhile) and the 1-minute load average before the runs. Needs the `geryon` command of this
checkout on PATH.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def make_files(root: Path, n: int, size: int) -> None:
    rng = random.Random(n)
    words = [f"w{i}" for i in range(5000)]
    for i in range(n):
        d = root / f"dir{i // 500:03d}"
        d.mkdir(parents=True, exist_ok=True)
        text = []
        total = 0
        while total < size:
            line = " ".join(rng.choice(words) for _ in range(10))
            text.append(line)
            total += len(line) + 1
        (d / f"f{i:06d}.txt").write_text("\n".join(text) + "\n")


class Daemon:
    def __init__(self, argv: list[str], err: Path, env: dict[str, str]) -> None:
        self.err = open(err, "w+")
        self.proc = subprocess.Popen(argv, stdout=self.err, stderr=subprocess.STDOUT, env={**env, "PYTHONUNBUFFERED": "1"})
        self.path = err

    def address(self, timeout: float = 30) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in self.path.read_text().splitlines():
                if "listening on" in line:
                    return line.split("listening on", 1)[1].split()[0]
            time.sleep(0.05)
        raise RuntimeError(self.path.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.err.close()


def proc_cpu(pid: int) -> float:
    """User + system seconds a running process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(argv: list[str], env: dict[str, str], daemons: tuple[int, ...] = ()) -> tuple[float, float]:
    """Wall and CPU seconds of one command (and of `daemons` meanwhile)."""
    os.sync()          # the other load's writes on the disk first: neither pays for the other's writeback
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    d0 = sum(proc_cpu(p) for p in daemons)
    t = time.monotonic()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime + sum(proc_cpu(p) for p in daemons) - d0
    return wall, cpu


def bench(work: Path, n: int, size: int, runs: int,
          other: Path | None = None) -> dict[str, list[tuple[float, float]]]:
    src = work / f"src{n}"
    make_files(src, n, size)
    secret = work / "secret"
    # Bytecode as an installed package has it: compiled once (by the untimed warm-up load), kept
    # out of the source tree (PYTHONDONTWRITEBYTECODE, if set here, would recompile every run).
    env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config"), "GERYON_SECRET_FILE": str(secret),
           "PYTHONPYCACHEPREFIX": str(work / "pycache")}
    env.pop("GERYON_REGISTRY", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(["geryon", "init", "--secret-file", str(secret)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ndb = work / "cluster.ndb"
    ndb.write_text("")
    reg = Daemon(["geryon", "registry", "serve", "--listen", "127.0.0.1:0", "--no-mdns", "--secret-file",
                  str(secret), "--ndb", str(ndb)], work / "registry.err", env)
    url = reg.address()
    pool = work / "pool"
    pool.mkdir(exist_ok=True)
    node = Daemon(["geryon", "node", "--name", "n0", "--listen", "127.0.0.1:0", "--secret-file", str(secret),
                   "--work-dir", str(work / "node"), "--registry", url, "--chunk-pool", str(pool)],
                  work / "node.err", env)
    node.address()
    time.sleep(1.5)      # the node's pool reaches the registry
    daemons = (node.proc.pid, reg.proc.pid)
    out = work / "local"      # kept: from run 2 on, each load replaces the one before, as on the cluster
    local = ["geryon", "load", "-q", "--app", "b", "--to", str(out), "--ndb", str(work / "local.ndb"), str(src)]
    cluster = ["geryon", "load", "-q", "--app", "b", "--cluster", "--registry", url, "--ndb", str(ndb), str(src)]
    systems: list[tuple[str, list[str], dict[str, str], tuple[int, ...]]] = [
        ("local", local, env, ()), ("cluster", cluster, env, daemons)]
    if other is not None:      # the same cluster load by another checkout's code (an A/B on one cluster)
        systems.append(("other", cluster, {**env, "PYTHONPATH": str(other.resolve())}, daemons))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _, _ in systems}
    try:
        for name, argv, e, ds in systems:     # untimed: bytecode compiled, and every timed load replaces one
            timed(argv, e, ds)
        for run in range(runs):
            k = run % len(systems)          # who goes first turns each run
            for name, argv, e, ds in systems[k:] + systems[:k]:
                times[name].append(timed(argv, e, ds))
            print(f"  {n:,} files, run {run + 1}: " + ", ".join(
                f"{name} {times[name][-1][0]:.2f} s ({times[name][-1][1]:.2f} CPU)" for name, _, _, _ in systems)
                + f", load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        node.stop()
        reg.stop()
    shutil.rmtree(src, ignore_errors=True)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="*", default=["1000:3000", "2000:3000", "17738:7200"],
                    help="FILES:BYTES_PER_FILE, one per set")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--other", type=Path, help="another checkout: its cluster load too, on the same cluster")
    args = ap.parse_args()
    extra = " other cluster load s (CPU s) | other / cluster, paired median |" if args.other else ""
    print("| files | MB | local load s (CPU s) | cluster load s (CPU s, with the daemons') | cluster / local, "
          f"paired median (runs) |{extra} load (1 min) |")
    print("|---|---|---|---|---|---|" + ("---|---|" if args.other else ""))
    for spec in args.sets:
        n, size = (int(x) for x in spec.split(":"))
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="geryon-bench-load-") as tmp:
            times = bench(Path(tmp), n, size, args.runs, args.other)
        load = f"{load:.1f}-{os.getloadavg()[0]:.1f}"

        def cell(name: str) -> str:
            return (f"{statistics.median(w for w, _ in times[name]):.2f} "
                    f"({statistics.median(c for _, c in times[name]):.2f})")

        def paired(a: str, b: str) -> str:
            ratios = [x[0] / y[0] for x, y in zip(times[a], times[b])]
            return f"{statistics.median(ratios):.2f} ({' '.join(f'{r:.2f}' for r in ratios)})"

        more = f" {cell('other')} | {paired('other', 'cluster')} |" if args.other else ""
        print(f"| {n:,} | {n * size / 1e6:.1f} | {cell('local')} | {cell('cluster')} | "
              f"{paired('cluster', 'local')} |{more} {load} |", flush=True)


if __name__ == "__main__":
    main()
