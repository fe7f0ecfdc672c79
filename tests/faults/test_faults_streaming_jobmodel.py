"""Hadoop Streaming's job model on a real cluster (registry and three node daemons as processes), from
the CLI and the Python API: the streaming combiner, key fields (secondary sort) and the partitioner
command; each output equals the same job's in local mode and the sequential reference, and a bad
partitioner answer fails the cluster job in one line. (Local-mode detail and the rest of the bad
input: tests/engine/test_engine_streaming_jobmodel.py.)"""
from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path

from tests.faults.fault_helpers import FaultCluster, both_modes, input_lines, mapreduce, word_counts

REPO = Path(__file__).resolve().parents[2]

BY_LENGTH = """#!/bin/sh
# R is the first argument (madoop's convention); keys in, one per line; a partition number out for each
exec awk -v n="$1" '{ print length($0) % n }'
"""

# the key is a line's first two words, its partition the first word alone; the value the whole line
PAIR_MAP = "{ awk 'NF >= 2 { print $1 \"\\t\" $2 \"\\t\" $0 }' }"


def _counts(parts: list[bytes]) -> dict[str, int]:
    return {k: int(v) for p in parts for k, v in (ln.split("\t") for ln in p.decode().splitlines())}


def _job_dir(c: FaultCluster) -> Path:
    """The scripts in a directory of the job's own, with a space in its name (they travel in the pack)."""
    job_dir = c.tmp / "streaming job"
    job_dir.mkdir()
    for name in ("map.sh", "reduce.sh"):
        shutil.copy(REPO / "examples" / "wordcount" / name, job_dir / name)
    (job_dir / "by length.sh").write_text(BY_LENGTH)
    for f in job_dir.iterdir():
        os.chmod(f, 0o755)
    return job_dir


def test_streaming_combiner_and_partitioner_command_on_the_cluster_cli_and_api(fault_cluster: FaultCluster) -> None:
    from geryon.mapreduce.job import Job
    from registry.auth import load_secret
    from registry.client import RegistryClient

    c = fault_cluster
    job_dir = _job_dir(c)
    want = dict(word_counts(c.corpus))
    # the combiner: the same bytes as without it, here and on the cluster
    plain, _ = both_modes(c, job_dir, "plain", "-R", "3", "--split-size", "32K", "./map.sh", "./reduce.sh")
    cluster, local = both_modes(c, job_dir, "comb", "-R", "3", "--split-size", "32K", "--combiner", "./reduce.sh",
                           "./map.sh", "./reduce.sh")
    assert cluster == local == plain and _counts(cluster) == want
    # the partitioner command: part r holds the words of length r mod 3
    cluster, local = both_modes(c, job_dir, "bylen", "-R", "3", "--partitioner-cmd", "./by length.sh",
                           "--combiner", "./reduce.sh", "./map.sh", "./reduce.sh")
    assert cluster == local
    for r, part in enumerate(cluster):
        assert part and all(len(ln.split("\t")[0]) % 3 == r for ln in part.decode().splitlines())
    assert _counts(cluster) == want
    # the Python API: commands as argv, the combiner and the partitioner command travel in the pack
    job = Job(map=(str(job_dir / "map.sh"),), reduce=(str(job_dir / "reduce.sh"),),
              combine=(str(job_dir / "reduce.sh"),), partition_cmd=(str(job_dir / "by length.sh"),),
              partitions=2, name="api", format="text")
    secret = load_secret(c.secret_file)
    with RegistryClient(c.registry_url, secret=secret, owner="test") as registry:
        result = job.run(sorted(c.corpus), registry=registry, secret=secret)
        assert len(result.parts) == 2
        assert {k: int(v) for k, v in result} == want
        assert result.report.counters["geryon"]["combine_input_records"] > result.report.counters["geryon"][
            "combine_output_records"] > 0
    # a bad answer fails the cluster job in one line naming the command and the key; nothing written
    proc = mapreduce(c, job_dir, "bad", "cluster", "-R", "3", "--partitioner-cmd", "{ sed 's/.*/-1/' }",
                "./map.sh", "./reduce.sh")
    assert proc.returncode == 1
    first = proc.stderr.splitlines()[0]
    assert first.startswith("geryon: map task m") and " failed: partitioner sed 's/.*/-1/' answered -1 for key '" in first
    assert "', outside 0..2 [attempt m" in first, first   # the cluster names the attempt and its cpu
    assert not (c.tmp / "bad-cluster").exists() or not list((c.tmp / "bad-cluster").glob("part-*"))


def test_key_fields_secondary_sort_on_the_cluster_cli_and_api(fault_cluster: FaultCluster) -> None:
    from geryon.mapreduce.job import Job
    from registry.auth import load_secret
    from registry.client import RegistryClient

    c = fault_cluster
    job_dir = _job_dir(c)
    cluster, local = both_modes(c, job_dir, "pairs", "-R", "3", "--split-size", "32K", "--key-fields", "2",
                           "--partition-fields", "1", PAIR_MAP, "cat")
    assert cluster == local
    # the sequential reference: every line of two words or more, in input order; part r holds those
    # whose first word hashes to r, sorted by the first two words (input order among equal keys)
    lines = [ln for ln in input_lines(c) if len(ln.split()) >= 2]
    rows = [f"{ln.split()[0]}\t{ln.split()[1]}\t{ln}" for ln in lines]

    def key(row: str) -> str:
        return "\t".join(row.split("\t")[:2])

    want = [sorted((row for row in rows if zlib.crc32(row.split("\t")[0].encode()) % 3 == r), key=key)
            for r in range(3)]
    assert [p.decode().splitlines() for p in cluster] == want
    # the Python API
    job = Job(map=PAIR_MAP.strip("{} "), reduce="cat", key_fields=2, partition_fields=1, partitions=3, name="api",
              format="text", split_size=32 << 10)
    secret = load_secret(c.secret_file)
    with RegistryClient(c.registry_url, secret=secret, owner="test") as registry:
        result = job.run(sorted(c.corpus), registry=registry, secret=secret)
        assert len(result.parts) == 3
        got = [f"{k}\t{v}" for k, v in result]
    assert got == [row for part in want for row in part]
