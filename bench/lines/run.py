#!/usr/bin/env python3
"""`geryon mapreduce --reader lines` on one big file against one-process `collections.Counter`.

    PATH=.venv/bin:$PATH python bench/lines/run.py --make 1G           # makes /tmp/geryon-lines/lines.txt
    PATH=.venv/bin:$PATH python bench/lines/run.py --rounds 3 [--other CHECKOUT] [--file F]

The file is Python's standard library sources (this interpreter's), joined and repeated to the
size asked (short lines: ~36 bytes, ~3.4 words each, the costly case for a per-line reader).
Each round runs, in turn: `counter_lines` (`for line in f: c.update(line.split())`, the
one-process program a `--reader lines` job stands for), `counter_chunks`
(bench/peers/wc_counter.py: `bytes.split` over 16 MiB blocks, the fastest one-process
count), and `geryon mapreduce --reader lines` with the README's map.py/reduce.py
(`Counter(value.split())` per line, sum combiner) run by this checkout's `geryon`; `geryon_inmapper`,
the same job written with per-task hooks as examples/wordcount/inmapper.py is (map adds each line's
words into one Counter, map_final returns it: in-mapper combining, as a Hadoop or mrjob user writes a
word count for speed); and by
CHECKOUT's code too with `--other` (its directory put first on PYTHONPATH: an A/B on the same
file and machine). Prints each run's wall and CPU seconds (user+sys of the process and its
children, the figure a shared machine distorts least), the 1-minute load average before it,
then medians as a markdown table. Every output is checked equal to counter_lines' (sorted).
"""
from __future__ import annotations

import argparse
import glob
import os
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
COUNTER_LINES = '''import sys
from collections import Counter
c = Counter()
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        c.update(line.split())
with open(sys.argv[2], "w", encoding="utf-8") as out:
    out.writelines(f"{k}\\t{v}\\n" for k, v in c.items())
'''
MAP = "from collections import Counter\ndef map(key, value):\n    return Counter(value.split())\n"
REDUCE = "def reduce(key, values):\n    return sum(values)\ncombine = reduce\n"
INMAPPER = ("from collections import Counter\ncounts = Counter()\ndef map_init():\n    counts.clear()\n"
            "def map(key, value):\n    counts.update(value.split())\ndef map_final():\n    return counts\n")


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def make_file(path: Path, size: int) -> None:
    parts = []
    for p in sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "**", "*.py"), recursive=True)):
        with open(p, "rb") as f:
            b = f.read()
        try:
            text = b.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if "\x00" in text or "\r" in text:
            continue
        parts.append(b if b.endswith(b"\n") else b + b"\n")
    blob = b"".join(parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        left = size
        while left > 0:
            piece = blob[:left]
            if len(piece) < len(blob):
                piece = piece[:piece.rfind(b"\n") + 1]
                left = 0
            out.write(piece)
            left -= len(piece)


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float]:
    load = os.getloadavg()[0]
    c0, t0 = cpu_children(), time.monotonic()
    subprocess.run(argv, check=True, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0, cpu_children() - c0, load


def sorted_lines(paths: list[Path]) -> list[bytes]:
    lines: list[bytes] = []
    for p in paths:
        lines.extend(p.read_bytes().splitlines())
    return sorted(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "geryon-lines" / "lines.txt")
    ap.add_argument("--make", metavar="SIZE", help="make --file of this size first (e.g. 1G)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--other", type=Path, help="another checkout of Geryon, run the same way")
    ap.add_argument("--only", nargs="*", help="systems to run (counter_lines counter_chunks geryon geryon_inmapper other)")
    args = ap.parse_args()
    if args.make:
        make_file(args.file, parse_size(args.make))
    work = args.file.parent / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "map.py").write_text(MAP)
    (work / "reduce.py").write_text(REDUCE)
    (work / "inmapper.py").write_text(INMAPPER)
    (work / "counter_lines.py").write_text(COUNTER_LINES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
    env.update({"GERYON_JOBS_DIR": str(work / "jobs"), "XDG_CONFIG_HOME": str(work / "config")})
    geryon = shutil.which("geryon")
    if geryon is None:
        sys.exit("bench/lines/run.py: put this checkout's geryon on PATH (PATH=.venv/bin:$PATH)")
    systems = {
        "counter_lines": ([sys.executable, str(work / "counter_lines.py"), str(args.file), "OUT/out.txt"], env),
        "counter_chunks": ([sys.executable, str(REPO / "bench" / "peers" / "wc_counter.py"), str(args.file),
                            "OUT/out.txt"], env),
        "geryon": ([geryon, "mapreduce", "-q", "--reader", "lines", "map.py", "reduce.py", str(args.file),
                    "--out", "OUT"], env),
        "geryon_inmapper": ([geryon, "mapreduce", "-q", "--reader", "lines", "inmapper.py", "reduce.py",
                             str(args.file), "--out", "OUT"], env),
    }
    if args.other:
        systems["other"] = (systems["geryon"][0], {**env, "PYTHONPATH": str(args.other.resolve())})
    if args.only:
        systems = {k: v for k, v in systems.items() if k in args.only}
    print(f"file {args.file}: {args.file.stat().st_size / (1 << 20):.0f} MiB; cpus {os.cpu_count()}", flush=True)
    results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in systems}
    reference: list[bytes] | None = None
    for rnd in range(args.rounds):
        for name, (argv, e) in systems.items():
            out = work / f"out-{name}"
            shutil.rmtree(out, ignore_errors=True)
            if not name.startswith(("geryon", "other")):
                out.mkdir()
            argv = [a.replace("OUT", str(out)) for a in argv]
            wall, cpu, load = timed(argv, e, work)
            results[name].append((wall, cpu, load))
            print(f"round {rnd + 1} {name}: wall {wall:.2f} s, cpu {cpu:.2f} s, load {load:.2f}", flush=True)
            if name == "counter_chunks":
                continue  # bytes.split and str.split differ on non-ASCII spaces: not compared
            got = sorted_lines(sorted(p for p in out.glob("*") if not p.name.startswith("_")))
            if reference is None:
                reference = got
            elif got != reference:
                sys.exit(f"{name}: output differs from the first run's")
    base = statistics.median(w for w, _, _ in results.get("counter_lines", [])) if "counter_lines" in results else None
    print("\n| system | wall s median (runs) | CPU s median | x counter_lines wall | load (1 min) |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        walls = [w for w, _, _ in runs]
        med = statistics.median(walls)
        ratio = f"{med / base:.2f}" if base else "-"
        print(f"| {name} | {med:.2f} ({' '.join(f'{w:.1f}' for w in walls)}) | "
              f"{statistics.median(c for _, c, _ in runs):.2f} | {ratio} | "
              f"{min(l for _, _, l in runs):.1f}-{max(l for _, _, l in runs):.1f} |")


if __name__ == "__main__":
    main()
