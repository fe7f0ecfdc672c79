"""The job options on a real Dask cluster (a scheduler and two worker processes) give the bytes
local mode gives: total order (a streaming job, two key fields), the streaming combiner, the
partitioner command, key and partition fields, -D and --cmdenv, and a map-only -R 0 job. (The
Python reference jobs, total order included: test_dask_reference.py.)"""
from __future__ import annotations

import os
import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

BY_LENGTH = """#!/bin/sh
exec awk -v n="$1" '{ print length($0) % n }'
"""

FIELDS = "awk 'NF >= 2 { print $1 \"\\t\" $2 \"\\t\" NF }'"

CASES = {
    "total order, streaming": ["--total-order", "-R", "4", "--reader", "lines",
                               "awk 'NF { print $1 \"\\t\" length($0) }'", "cat"],
    "total order, two key fields": ["--total-order", "--key-fields", "2", "-R", "3", "--reader", "lines", FIELDS, "cat"],
    "combiner and partitioner command": ["-R", "3", "--combiner", "{job}/reduce.sh", "--partitioner-cmd",
                                         "{job}/by length.sh", "{job}/map.sh", "{job}/reduce.sh"],
    "key and partition fields": ["-R", "3", "--reader", "lines", "--key-fields", "2", "--partition-fields", "1",
                                 FIELDS, "cat"],
    "-D and --cmdenv": ["-R", "2", "--reader", "lines", "-D", "min=6", "--cmdenv", "TAG=long:",
                        "awk -v t=\"$TAG\" -v m=\"$min\" '{ for (i = 1; i <= NF; i++) if (length($i) >= m) "
                        "print t $i \"\\t1\" }'", "{job}/reduce.sh"],
    "map only, -R 0": ["-R", "0", "--reader", "lines", "--cmdenv", "TAG=s:",
                       "awk -v t=\"$TAG\" '/^Subject:/ { print t $0 }'", "NONE"],
}


def _check(case: str, parts: dict[str, bytes]) -> None:
    """What each case's output must show beyond equal bytes (that the option did something)."""
    lines = {name: data.decode().splitlines() for name, data in parts.items()}
    every = [ln for ls in lines.values() for ln in ls]
    assert every, case
    if case.startswith("total order"):       # the parts read in order are sorted
        fields = 1 if case.endswith("streaming") else 2
        keys = ["\t".join(ln.split("\t")[:fields]) for ln in every]
        assert keys == sorted(keys) and sum(1 for ls in lines.values() if ls) > 1
    elif case == "combiner and partitioner command":
        for r, ls in enumerate(lines.values()):
            assert ls and all(len(ln.split("\t")[0]) % 3 == r for ln in ls)
    elif case == "key and partition fields":   # a first word in one part, its lines by the second word
        seen: dict[str, int] = {}
        for r, ls in enumerate(lines.values()):
            keys = [ln.split("\t")[:2] for ln in ls]
            assert keys == sorted(keys, key="\t".join)
            for first, _ in keys:
                assert seen.setdefault(first, r) == r
        assert len(seen) > 3
    elif case == "-D and --cmdenv":
        words = [ln.split("\t")[0] for ln in every]
        assert all(w.startswith("long:") and len(w) >= len("long:") + 6 for w in words)
    else:
        assert all(ln.startswith("s:Subject:") for ln in every) and len(parts) > 1


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    job = tmp_path_factory.mktemp("job dir") / "my scripts"
    job.mkdir()
    for name in ("map.sh", "reduce.sh"):
        shutil.copy(REPO / "examples" / "wordcount" / name, job / name)
    (job / "by length.sh").write_text(BY_LENGTH)
    for f in job.iterdir():
        os.chmod(f, 0o755)
    return job


@pytest.mark.parametrize("case", list(CASES))
def test_an_option_on_dask_gives_the_bytes_of_local_mode(case, job_dir, dask_cluster, geryon_cli, text_disks,
                                                         tmp_path, read_parts) -> None:
    args = [a.replace("{job}", str(job_dir)) for a in CASES[case]]
    outs = {}
    for mode, extra in (("local", ["--local"]), ("dask", ["--dask", dask_cluster.address])):
        out = tmp_path / f"{mode} out"
        done = geryon_cli("mapreduce", "-q", "--split-size", "20K", "--out", str(out), *extra, *args,
                          *map(str, text_disks))
        assert done.returncode == 0, done.stderr
        outs[mode] = read_parts(out)
    assert outs["dask"] == outs["local"]
    _check(case, outs["dask"])
