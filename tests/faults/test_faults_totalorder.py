"""Total-order output on a real cluster (registry and three node daemons as processes), from the
CLI (streaming: examples/sort) and the Python API (random keys of mixed types, random R, a hot
key): the parts read in order equal sorted() of the map output, and the parts are byte for byte
those of the same job in local mode. The corpus is large enough (about 3.5 MB) that sampling
reads pieces of the files, not all of them. (Local mode and bad input:
tests/engine/test_engine_totalorder.py.)"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geryon.mapreduce.order import total_key
from tests.faults.fault_helpers import FaultCluster, both_modes, input_lines, write_corpus

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


def test_total_order_sort_example_on_the_cluster_equals_local_mode(fault_cluster: FaultCluster) -> None:
    c = fault_cluster
    work = c.tmp / "some dir"
    work.mkdir()
    sort = EXAMPLES / "sort"
    cluster, local = both_modes(c, work, "sorted", "--total-order", "-R", "4", "--reader", "lines", "--split-size",
                                "256K", str(sort / "map.sh"), str(sort / "reduce.sh"),
                                stderr_has="total order: largest part", quiet=False, timeout=300)
    assert cluster == local and len(cluster) == 4 and all(cluster)
    want = sorted(input_lines(c), key=lambda ln: ln[:10])   # stable: input order within a key
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
    pairs = [p for ln in input_lines(c) for p in script.keys_of(ln, seed, hot)]
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
