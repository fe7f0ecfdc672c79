"""A reduce over many map outputs keeps its budget: a real `geryon mapreduce` with 64 map tasks.

A reduce task used to merge the segments of every map task at once, each open stream holding a
read chunk, its unpacker's buffer and a decoded block (about 3-4 MiB each), so 64 map outputs
cost some 220 MiB beyond a 32M budget. Now it reads at most budget / MERGE_STREAM_BYTES of them
at once, merging the rest in passes first. Checked: the reduce attempt's peak RSS (its VmHWM,
from the job record) is within --sort-budget + `memory.TASK_OVERHEAD`, merges happened, and the
part file is byte-identical to the same job's at a budget that merges everything at once.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from geryon.mapreduce import memory
from geryon.mapreduce.segments import merge_fan_in

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20
MAPS = 64
"""Input files, one map task each (--split-size below a file's size)."""


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """64 files of 2 MiB ("my disk", with a space); a map emitting (first word, line) for every
    line; an order-sensitive reduce (a digest of its values in the order they came)."""
    d = tmp_path_factory.mktemp("manymaps")
    disk = d / "my disk"
    disk.mkdir()
    rng = random.Random(64)
    words = ["".join(rng.choices("abcdefghijklmnop", k=rng.randint(2, 6))) for _ in range(2000)]
    for n in range(MAPS):
        lines = []
        size = 0
        j = 0
        while size < 2 * MIB:
            line = f"{rng.choice(words)} f{n}l{j} " + "x" * rng.randint(40, 120)
            lines.append(line)
            size += len(line) + 1
            j += 1
        (disk / f"part {n:03d}.txt").write_text("\n".join(lines) + "\n")
    (d / "map.py").write_text(
        "def map(key, value):\n"
        "    for line in value.splitlines():\n"
        "        yield line.split(' ', 1)[0], line\n")
    (d / "reduce.py").write_text(
        "import hashlib\n\n"
        "def reduce(key, values):\n"
        "    h = hashlib.sha256()\n"
        "    n = 0\n"
        "    for v in values:\n"
        "        h.update(v.encode() + b'\\n')\n"
        "        n += 1\n"
        "    return f'{n} {h.hexdigest()}'\n")
    return disk, d / "map.py", d / "reduce.py"


def _run(job: tuple[Path, Path, Path], tmp: Path, budget: str) -> tuple[bytes, dict, dict]:
    disk, map_py, reduce_py = job
    jobs, out = tmp / f"jobs-{budget}", tmp / f"out-{budget}"
    env = {**os.environ, "GERYON_JOBS_DIR": str(jobs), "HOME": str(tmp / "home")}
    (tmp / f"work-{budget}").mkdir()
    proc = subprocess.run([sys.executable, "-c", "from geryon.cli import main; main()", "mapreduce", "-q",
                           str(map_py), str(reduce_py), str(disk), "-R", "1", "-j", "2", "--split-size", "1M",
                           "--sort-budget", budget, "--out", str(out), "--workdir", str(tmp / f"work-{budget}")],
                          capture_output=True, text=True, timeout=900, env=env, cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    (record,) = jobs.iterdir()
    data = json.loads((record / "job.json").read_text())
    reduces = [a for a in data["attempts"] if a["task"].startswith("r")]
    maps = {a["task"] for a in data["attempts"] if a["task"].startswith("m")}
    assert len(maps) == MAPS and len(reduces) == 1, (maps, reduces)
    (part,) = out.glob("part-*")
    return part.read_bytes(), reduces[0], data.get("summary", {}).get("counters", {}).get("geryon", {})


def test_a_reduce_over_64_map_outputs_keeps_its_budget_and_its_output(job, tmp_path: Path) -> None:
    assert merge_fan_in(32 * MIB) < MAPS <= merge_fan_in(512 * MIB)
    small, attempt, counters = _run(job, tmp_path, "32M")
    limit = 32 * MIB + memory.TASK_OVERHEAD
    print(f"reduce peak {attempt['peak_rss'] / MIB:.0f} MiB at 32M; merges {counters.get('reduce_merges')}")
    assert 0 < attempt["peak_rss"] <= limit, f"reduce peaked at {attempt['peak_rss'] / MIB:.0f} MiB, above {limit / MIB:.0f}"
    assert counters.get("reduce_merges", 0) > 0, counters
    whole, whole_attempt, whole_counters = _run(job, tmp_path, "512M")  # streamed, every map output at once
    assert "reduce_merges" not in whole_counters, whole_counters
    print(f"reduce peak {whole_attempt['peak_rss'] / MIB:.0f} MiB at 512M, merging all {MAPS} at once")
    assert small == whole
    total = sum(int(line.split(b"\t")[1].split()[0]) for line in small.splitlines())
    assert total == sum(len(f.read_bytes().splitlines()) for f in job[0].iterdir())  # every line, once
