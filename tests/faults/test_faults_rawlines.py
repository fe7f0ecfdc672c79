"""The streaming shuffle kept as bytes (`geryon.mapreduce.rawlines`) on a real cluster (a registry and
three node daemons as processes): a streaming map into a streaming reduce over tricky lines (equal
keys, empty keys and values, lines without a tab, tabs, carriage returns, non-ASCII, a hot key, one
file that is not UTF-8), with the hash or a total order and random R, gives byte for byte the parts
the generic path gives in local mode on the same files. (Local mode: tests/engine/test_engine_rawlines.py.)
"""
from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from geryon.mapreduce import maptask
from geryon.mapreduce.job import Job
from tests.engine.test_engine_rawlines import random_lines
from tests.faults.fault_helpers import GERYON, FaultCluster


@pytest.fixture
def corpus() -> dict[str, dict[str, bytes]]:
    rng = random.Random(11)
    disks: dict[str, dict[str, bytes]] = {}
    for d in range(3):
        files = {f"f {f}.txt": random_lines(rng, 4000, hot=0.3 if d == 0 else 0.0) for f in range(3)}
        if d == 2:
            files["f 2.txt"] += b"caf\xe9\t\xff\n"   # not UTF-8: its map task goes the generic way
        disks[f"d{d}.t"] = files
    return disks


def _parts(out: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(out.iterdir()) if p.name.startswith("part-")]


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(r=st.integers(1, 5), total=st.booleans(), budget=st.sampled_from(["1M", "256M"]))
@example(r=4, total=True, budget="1M")
def test_streaming_lines_on_the_cluster_equal_the_generic_path(fault_cluster: FaultCluster, r: int, total: bool,
                                                               budget: str) -> None:
    c = fault_cluster
    local = c.tmp / "local copies"
    for name, files in c.corpus.items():
        (local / name).mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            (local / name / rel).write_bytes(data)
    work = c.tmp / "a dir"
    work.mkdir(exist_ok=True)
    out = c.tmp / f"lines-{r}-{total}-{budget}"
    order = ["--total-order"] if total else []
    proc = subprocess.run([*GERYON, "mapreduce", *order, "-R", str(r), "--reader", "lines", "--split-size", "64K",
                           "--sort-budget", budget, "--out", str(out), "cat", "cat", *sorted(c.corpus)],
                          capture_output=True, text=True, env=c.job_env(), cwd=work, timeout=300)
    assert proc.returncode == 0, proc.stderr
    cluster = _parts(out)
    job = Job(map="cat", reduce="cat", partitions=r, reader="lines", total_order=total, split_size=64 << 10,
              sort_budget=(1 << 20) if budget == "1M" else (256 << 20))
    generic_out = c.tmp / f"generic-{r}-{total}-{budget}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(maptask, "applies_to_lines", lambda job, part: False)
        job.run([str(local / name) for name in sorted(c.corpus)], out=str(generic_out), workers=2)
    generic = _parts(generic_out)
    assert cluster == generic and len(cluster) == r
    assert sum(p.count(b"\n") for p in cluster) == sum(f.count(b"\n") for fs in c.corpus.values() for f in fs.values())
