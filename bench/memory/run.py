"""Peak task memory against --sort-budget: word count over generated text, budgets x input sizes.

    PATH=.venv/bin:$PATH python bench/memory/run.py [--sizes 128,512] [--budgets 64M,128M,256M,512M,1G]
        [--corpus DIR] [-j 2] [--reader file] [--value-bytes 5120 [--late-after 10000]]
        [--key-bytes 1024 --late-after 200000]

For each input size (MiB of `corpus.py` text, made once under --corpus) and budget, runs
`geryon mapreduce examples/wordcount/map.py examples/wordcount/reduce.py` and reads every
attempt's peak RSS from the job record (`peak_rss`, the attempt's VmHWM). With --value-bytes N
the map is instead one pair per line, (its first word, an N-byte value), and the reduce counts them:
few keys with long lists of big values; with --late-after L as well, the first L lines of each
file give 12-byte values (values that grow late). With --key-bytes N --late-after L the map
is word count's shape (a Counter a file, summed) over one key a line: the line's last two words
(about 10 bytes, never repeated) for the first L lines a map task sees, then the line repeated
to N bytes (keys that grow late). Prints one
markdown row per run: the largest map and reduce peak, the peak over the budget, and time.
Not a test: nothing is asserted (tests/faults/test_faults_memory.py checks the bound).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from corpus import write_corpus  # noqa: E402


def size_of(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


BIG_MAP = """def map(key, value):
    for j, line in enumerate(value.splitlines()):
        if line:
            n = 12 if j < {late} else {n}
            yield line.split(" ", 1)[0], (line * (n // len(line) + 1))[:n]
"""

KEY_MAP = """from collections import Counter

_lines = 0  # lines this task's map has seen (a task is one process)


def map(key, value):
    global _lines
    c = Counter()
    for line in value.splitlines():
        if line:
            _lines += 1
            c[" ".join(line.rsplit(" ", 2)[1:]) if _lines <= {late} else (line * ({n} // len(line) + 1))[:{n}]] += 1
    return c
"""

WORDCOUNT_REDUCE = """def reduce(key, values):
    return sum(values)


combine = reduce
"""

COUNT_REDUCE = """def reduce(key, values):
    return sum(1 for _ in values)
"""


def run_one(corpus: str, budget: str, workers: int, reader: str, extra: list[str],
            program: tuple[str, str] = (os.path.join(ROOT, "examples/wordcount/map.py"),
                                        os.path.join(ROOT, "examples/wordcount/reduce.py"))) -> dict:
    jobs = tempfile.mkdtemp(prefix="geryon-bench-jobs-")
    out = tempfile.mkdtemp(prefix="geryon-bench-out-")
    env = {**os.environ, "GERYON_JOBS_DIR": jobs}
    cmd = ["geryon", "mapreduce", "-q", *program, corpus, "-j", str(workers),
           "--sort-budget", budget, "--reader", reader, "--out", os.path.join(out, "o"), *extra]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    try:
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else str(proc.returncode)}
        (job_dir,) = os.listdir(jobs)
        with open(os.path.join(jobs, job_dir, "job.json")) as f:
            attempts = json.load(f)["attempts"]
        peaks = {"m": 0, "r": 0}
        for a in attempts:
            peaks[a["task"][0]] = max(peaks[a["task"][0]], a.get("peak_rss", 0))
        return {"wall": wall, "map": peaks["m"], "reduce": peaks["r"], "tasks": len(attempts)}
    finally:
        shutil.rmtree(jobs, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="128,512")
    ap.add_argument("--budgets", default="64M,128M,256M,512M,1G")
    ap.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "geryon-bench-memory"))
    ap.add_argument("-j", type=int, default=2)
    ap.add_argument("--reader", default="file")
    ap.add_argument("--value-bytes", type=int, default=0, help="a map emitting values of this size")
    ap.add_argument("--key-bytes", type=int, default=0, help="a map emitting keys of this size ...")
    ap.add_argument("--late-after", type=int, default=0,
                    help="... after this many 12-byte values a file (--value-bytes) or short keys a task (--key-bytes)")
    ap.add_argument("extra", nargs="*", help="more geryon mapreduce options")
    args = ap.parse_args()
    program = run_one.__defaults__[0]
    if args.value_bytes or args.key_bytes:
        prog_dir = tempfile.mkdtemp(prefix="geryon-bench-prog-")
        program = (os.path.join(prog_dir, "map.py"), os.path.join(prog_dir, "reduce.py"))
        with open(program[0], "w") as f:
            f.write(BIG_MAP.format(n=args.value_bytes, late=args.late_after) if args.value_bytes else
                    KEY_MAP.format(n=args.key_bytes, late=args.late_after))
        with open(program[1], "w") as f:
            f.write(COUNT_REDUCE if args.value_bytes else WORDCOUNT_REDUCE)
    try:
        run_all(args, program)
    finally:
        if args.value_bytes or args.key_bytes:
            shutil.rmtree(os.path.dirname(program[0]), ignore_errors=True)


def run_all(args: argparse.Namespace, program: tuple[str, str]) -> None:
    mib = 1 << 20
    print("| input MiB | --sort-budget | largest map peak MiB | largest reduce peak MiB | "
          "peak - budget MiB | wall s |")
    print("|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        corpus = os.path.join(args.corpus, f"{size}")
        if not os.path.isdir(corpus) or len(os.listdir(corpus)) != size:
            shutil.rmtree(corpus, ignore_errors=True)
            write_corpus(corpus, size)
        for budget in args.budgets.split(","):
            r = run_one(corpus, budget, args.j, args.reader, args.extra, program)
            if "error" in r:
                print(f"| {size} | {budget} | failed: {r['error']} | | | |", flush=True)
                continue
            peak = max(r["map"], r["reduce"])
            print(f"| {size} | {budget} | {r['map'] / mib:.0f} | {r['reduce'] / mib:.0f} | "
                  f"{(peak - size_of(budget)) / mib:+.0f} | {r['wall']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
