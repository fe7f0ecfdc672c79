#!/usr/bin/env python3
"""Cluster mode against local mode: the same word count, the same files, one machine, one run.

    python bench/cluster/run.py                          # $CORPUS/docs, 3 runs each, R=6
    python bench/cluster/run.py --corpus $CORPUS/docs100 --runs 5 --cpus 2

Splits the corpus's top-level entries into 3 disks (hard links, balanced by size), starts
a real registry and 3 node daemons on loopback (each serving one input disk and one output
chunk, with `--cpus` cores), names the disks in the registry's ndb file, then runs
`geryon mapreduce` alternately in local mode (`--local`, the three directories) and in
cluster mode (`--registry`, the three disk names), checks that the part files are
byte-identical, and prints a markdown table: wall seconds (median, all runs), overhead,
bytes shuffled, files created (map outputs, indexes and staged parts, from the job
records), attempts. Needs the `geryon` command of this checkout on PATH.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAP, REDUCE = REPO / "examples" / "wordcount" / "map.py", REPO / "examples" / "wordcount" / "reduce.py"
NODES = 3


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pieces(corpus: Path, limit: int) -> list[tuple[int, Path]]:
    """The corpus's entries, big directories taken apart until no piece exceeds `limit`."""
    out = []
    for p in corpus.iterdir():
        size = du(p)
        if p.is_dir() and size > limit:
            out.extend(pieces(p, limit))
        else:
            out.append((size, p))
    return out


def make_disks(corpus: Path, work: Path) -> list[Path]:
    """Three directories of hard links to pieces of the corpus, balanced by size."""
    entries = sorted(pieces(corpus, du(corpus) // (NODES * 8)), reverse=True)
    groups: list[list[Path]] = [[] for _ in range(NODES)]
    sizes = [0] * NODES
    for size, p in entries:
        k = sizes.index(min(sizes))
        groups[k].append(p)
        sizes[k] += size
    disks = []
    for k, group in enumerate(groups):
        d = work / f"d{k}"
        d.mkdir()
        for p in group:
            dest = d / p.relative_to(corpus)
            dest.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-al", str(p), str(dest)], check=True)
        disks.append(d)
    return disks


def start(argv: list[str], err: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(err, "w"), text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        raise SystemExit(f"{argv[:3]} did not start: {line}{err.read_text()}")
    return proc, line.split("listening on", 1)[1].split()[0]


def run_job(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.monotonic()
    proc = subprocess.run(["geryon", "mapreduce", *args], capture_output=True, text=True, env=env, cwd=REPO)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"job failed: {proc.stderr[-2000:]}")
    return seconds, proc.stderr


def newest_record(jobs: Path) -> dict:
    try:
        from geryon.mapreduce.jobstore import JobStore
    except ImportError:      # a checkout from before the layout (driver_ab.py runs this harness on it)
        from geryon.jobstore import JobStore  # type: ignore[no-redef]

    store = JobStore(str(jobs))
    return store.read(store.list()[0]["id"])


def files_created(record: dict) -> int:
    """Map output + index per map attempt, one staged part per reduce attempt."""
    return sum(2 if a["task"].startswith("m") else 1 for a in record["attempts"])


def shuffled(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.strip().startswith("shuffle:"):
            return line.split(":", 1)[1].split(",")[0].strip()
    return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path(os.environ.get("CORPUS", "corpus")) / "docs",
                    help="the corpus (default: $CORPUS/docs)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=1, help="cores each node offers")
    ap.add_argument("-R", type=int, default=6)
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="geryon-bench-cluster-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    env["GERYON_JOBS_DIR"] = str(work / "jobs")
    secret = work / "secret"
    subprocess.run(["geryon", "init", "--secret-file", str(secret)], check=True, capture_output=True)
    disks = make_disks(a.corpus.resolve(), work)
    ndb = work / "cluster.ndb"
    ndb.write_text("".join(f"name=d{k}.docs kfs master=n{k}!d{k}\n" for k in range(NODES)))
    local_ndb = work / "local.ndb"
    local_ndb.write_text("".join(f"name=d{k}.docs path={d}\n" for k, d in enumerate(disks)))
    procs = []
    try:
        reg, url = start(["geryon", "registry", "serve", "--listen", "127.0.0.1:0", "--no-mdns",
                          "--secret-file", str(secret), "--ndb", str(ndb)], work / "registry.err", env)
        procs.append(reg)
        for k, d in enumerate(disks):
            out_chunk = work / f"out{k}"
            subprocess.run(["geryon", "disk", "new", str(out_chunk), "--size", "8G"], check=True, capture_output=True)
            node, _ = start(["geryon", "node", "--name", f"n{k}", "--listen", "127.0.0.1:0", "--secret-file",
                             str(secret), "--registry", url, "--cpus", str(a.cpus), "--work-dir", str(work / f"w{k}"),
                             "--disk", f"a-out={out_chunk}", "--disk", f"d{k}={d}"], work / f"node{k}.err", env)
            procs.append(node)
        time.sleep(3)  # every node registered, the disks named
        names = [f"d{k}.docs" for k in range(NODES)]
        common = ["-R", str(a.R), "--name", "wc", str(MAP), str(REDUCE)]
        times: dict[str, list[float]] = {"local": [], "cluster": []}
        info: dict[str, dict] = {}
        for run in range(a.runs):
            for mode in ("local", "cluster"):
                out = work / f"{mode}-out"
                shutil.rmtree(out, ignore_errors=True)
                extra = ["--local", "--ndb", str(local_ndb)] if mode == "local" else \
                        ["--registry", url, "--secret-file", str(secret)]
                seconds, stderr = run_job([*extra, "--out", str(out), *common, *names], env)
                times[mode].append(seconds)
                rec = newest_record(work / "jobs")
                info[mode] = {"shuffled": shuffled(stderr), "files": files_created(rec),
                              "attempts": len(rec["attempts"]), "maps": rec.get("maps")}
                print(f"run {run} {mode}: {seconds:.2f}s", file=sys.stderr, flush=True)
            for r in range(a.R):
                same = (work / "local-out" / f"part-{r:05d}").read_bytes() == (work / "cluster-out" / f"part-{r:05d}").read_bytes()
                if not same:
                    raise SystemExit(f"part-{r:05d} differs between local and cluster mode")
        med = {m: statistics.median(t) for m, t in times.items()}
        overhead = (med["cluster"] / med["local"] - 1) * 100
        size = sum(du(d) for d in disks)
        print(f"\nword count, {size / 1e9:.2f} GB ({a.corpus.name}), R={a.R}, 3 nodes x {a.cpus} cpu(s) "
              f"vs local -j {os.cpu_count()}; outputs byte-identical\n")
        print("| mode | median s | runs (s) | shuffled | files created | attempts |")
        print("|---|---:|---|---:|---:|---:|")
        for m in ("local", "cluster"):
            print(f"| {m} | {med[m]:.2f} | {' '.join(f'{t:.2f}' for t in times[m])} | {info[m]['shuffled']} | "
                  f"{info[m]['files']} | {info[m]['attempts']} |")
        print(f"\ncluster-mode overhead: {overhead:+.1f} %")
        (work / "result.json").write_text(json.dumps({"times": times, "info": info, "overhead": overhead}))
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(10)
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
