"""Hadoop Streaming's job model on a real Dask cluster (a scheduler and two worker processes): the
streaming combiner, the partitioner command and key fields give the bytes local mode gives."""
from __future__ import annotations

import os
import pathlib
import shutil

REPO = pathlib.Path(__file__).resolve().parents[2]

BY_LENGTH = """#!/bin/sh
exec awk -v n="$1" '{ print length($0) % n }'
"""


def test_streaming_combiner_partitioner_command_and_key_fields_on_dask(dask_cluster, geryon_cli, text_disks,
                                                                     tmp_path, read_parts) -> None:
    job = tmp_path / "job dir"
    job.mkdir()
    for name in ("map.sh", "reduce.sh"):
        shutil.copy(REPO / "examples" / "wordcount" / name, job / name)
    (job / "by length.sh").write_text(BY_LENGTH)
    for f in job.iterdir():
        os.chmod(f, 0o755)
    runs = {
        "wc": ["--combiner", str(job / "reduce.sh"), "--partitioner-cmd", str(job / "by length.sh"),
               str(job / "map.sh"), str(job / "reduce.sh")],
        "pairs": ["--reader", "lines", "--key-fields", "2", "--partition-fields", "1",
                  "{ awk 'NF >= 2 { print $1 \"\\t\" $2 \"\\t\" NF }' }", "cat"],
    }
    for name, args in runs.items():
        outs = {}
        for mode, extra in (("local", ["--local"]), ("dask", ["--dask", dask_cluster.address])):
            out = tmp_path / f"{name} {mode}"
            done = geryon_cli("mapreduce", "-q", "-R", "3", "--split-size", "20K", "--out", str(out), *extra, *args,
                              *map(str, text_disks))
            assert done.returncode == 0, done.stderr
            outs[mode] = read_parts(out)
        assert outs["dask"] == outs["local"] and len(outs["dask"]) == 3, name
        if name == "wc":
            for r, data in enumerate(outs["dask"].values()):
                assert data and all(len(ln.split("\t")[0]) % 3 == r for ln in data.decode().splitlines())
        else:   # each first word in one part, its lines ordered by the second word
            seen: dict[str, int] = {}
            for r, data in enumerate(outs["dask"].values()):
                lines = data.decode().splitlines()
                keys = [ln.split("\t")[:2] for ln in lines]
                assert keys == sorted(keys, key="\t".join)
                for first, _ in keys:
                    assert seen.setdefault(first, r) == r
            assert len(seen) > 3
