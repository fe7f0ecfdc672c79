"""Total-order output on a real cluster (registry and three node daemons as processes), from the
CLI (streaming: examples/sort) and the Python API (random keys of mixed types, random R, a hot
key): the parts read in order equal sorted() of the map output, and the parts are byte for byte
those of the same job in local mode. The corpus is large enough (about 3.5 MB) that sampling
reads pieces of the files, not all of them. (Local mode and bad input:
tests/engine/test_engine_totalorder.py.)"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geryon.mapreduce.order import total_key
from tests.faults.fault_helpers import GERYON, FaultCluster, write_corpus

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

KEYS_PY = '''
import random
import zlib

import geryon


def keys_of(line, seed, hot):
    """Keys of one line: each word's, an int for some, the one hot key for a share `hot`."""
    for word in line.split():
        h = zlib.crc32(f"{seed}:{word}".encode())
        if h % 1000 < hot:
            yield "hot", word
        elif h % 3 == 0:
            yield h % 500 - 250, word
        else:
            yield word[::-1] + str(h % 7), word


def map(key, value):
    p = geryon.params()
    yield from keys_of(value, int(p["seed"]), int(p["hot"]))


def reduce(key, values):
    for v in values:
        yield key, v
'''


@pytest.fixture
def corpus() -> dict[str, dict[str, bytes]]:
    return write_corpus(Path("."), disks=3, files=4, lines=3000)


def _parts(out: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(out.iterdir()) if p.name.startswith("part-")]


def _input_lines(c: FaultCluster) -> list[str]:
    return [ln for disk in sorted(c.corpus) for f in sorted(c.corpus[disk])
            for ln in c.corpus[disk][f].decode().splitlines()]


def test_total_order_sort_example_on_the_cluster_equals_local_mode(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    c.reference()   # the local copies of the disks and their ndb file
    work = c.tmp / "some dir"
    work.mkdir()
    runs = []
    for mode in ("cluster", "local"):
        env = c.job_env()
        extra: list[str] = []
        if mode == "local":
            env.pop("GERYON_REGISTRY")
            extra = ["--local", "--ndb", str(c.tmp / "local-disks" / "ndb")]
        out = c.tmp / f"sorted-{mode}"
        proc = subprocess.run([*GERYON, "mapreduce", "--total-order", "-R", "4", "--reader", "lines",
                               "--split-size", "256K", *extra, "--out", str(out),
                               str(EXAMPLES / "sort" / "map.sh"), str(EXAMPLES / "sort" / "reduce.sh"),
                               *sorted(c.corpus)], capture_output=True, text=True, env=env, cwd=work, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "total order: largest part" in proc.stderr
        runs.append(_parts(out))
    cluster, local = runs
    assert cluster == local and len(cluster) == 4 and all(cluster)
    want = sorted(_input_lines(c), key=lambda ln: ln[:10])   # stable: input order within a key
    assert b"".join(cluster).decode().splitlines() == want


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 1000), r=st.integers(1, 6), hot=st.sampled_from([0, 50, 400]))
def test_total_order_api_on_the_cluster_equals_sorted(fault_cluster: FaultCluster, seed: int, r: int,
                                                      hot: int) -> None:
    from geryon.mapreduce.job import Job, load_script
    from registry.auth import load_secret
    from registry.client import RegistryClient

    c = fault_cluster
    job_dir = c.tmp / "keys job"
    job_dir.mkdir(exist_ok=True)
    (job_dir / "keys.py").write_text(KEYS_PY)
    script = load_script(str(job_dir / "keys.py"))
    pairs = [p for ln in _input_lines(c) for p in script.keys_of(ln, seed, hot)]
    want = sorted(pairs, key=lambda kv: total_key(kv[0]))
    job = Job(map=script.map, reduce=script.reduce, partitions=r, name=f"keys{seed}", format="json",
              reader="lines", split_size=256 << 10, params={"seed": seed, "hot": hot}, total_order=True)
    secret = load_secret(c.secret_file)
    with RegistryClient(c.registry_url, secret=secret, owner="test") as registry:
        result = job.run(sorted(c.corpus), registry=registry, secret=secret)
        got = list(result)
    assert [tuple(p) for p in got] == want
    assert len(result.report.part_bytes) == r
    if hot == 400 and r > 2:   # 40 % of the pairs under one key: that part is the largest, and alone
        share = sum(1 for k, _ in want if k == "hot") / len(want)
        assert result.report.balance <= share * r * 1.1
