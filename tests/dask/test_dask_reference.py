"""The engine's reference jobs on a real Dask cluster give the bytes local mode gives: streaming
jobs, a Python partitioner, JSON parts, a map-only job, a hot key through spills, bad records
skipped, and total order (a failing map and killed workers: test_dask_faults.py; word count
with its combiner: test_dask_wordcount.py)."""
from __future__ import annotations

import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EX = REPO / "examples"
JOBS = pathlib.Path(__file__).resolve().parent / "jobs"

CASES = {
    "streaming word count": ([EX / "wordcount" / "map.sh", EX / "wordcount" / "reduce.sh"], ["-R", "3"]),
    "streaming inverted index": ([EX / "index" / "map.sh", EX / "index" / "reduce.sh"], ["-R", "2"]),
    "json parts": ([EX / "wordcount" / "map.py", EX / "wordcount" / "reduce.py"], ["--format", "json", "-R", "4"]),
    "python partitioner": ([EX / "wordcount" / "byletter.py", EX / "wordcount" / "reduce.py"], ["-R", "3"]),
    "map only": ([EX / "grep" / "map.py", "NONE"], ["--reader", "lines", "-D", "pattern=^(From|Subject):"]),
    "hot key through spills": ([JOBS / "hotkeys.py", JOBS / "hotkeys.py"],
                               ["--reader", "lines", "-R", "2", "--sort-budget", "1M"]),
    "bad records skipped": ([EX / "wordcount" / "map.py", EX / "wordcount" / "reduce.py"],
                            ["--reader", "lines", "--skip-bad", "3", "-R", "2"]),
    "total order": ([EX / "sort" / "sort.py", EX / "sort" / "sort.py"], ["--total-order", "-R", "4", "--reader", "lines"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_reference_job_on_dask_is_byte_identical_to_local_mode(case, dask_cluster, geryon_cli, text_disks,
                                                               tmp_path, read_parts) -> None:
    steps, extra = CASES[case]
    disks = list(text_disks)
    if case == "bad records skipped":     # a disk with two lines that are not UTF-8 among good ones
        bad = tmp_path / "bad disk"
        shutil.copytree(text_disks[0], bad)
        (bad / "not utf-8.txt").write_bytes(b"good words here\n\xff\xfe broken\nmore good words\n\xc3 also\nend\n")
        disks = [bad, text_disks[1]]
    common = [*map(str, steps), *map(str, disks), *extra, "--split-size", "20K"]
    local, out = tmp_path / "local out", tmp_path / "dask out"
    done = geryon_cli("mapreduce", "-q", *common, "--local", "--out", str(local))
    assert done.returncode == 0, done.stderr
    done = geryon_cli("mapreduce", *common, "--dask", dask_cluster.address, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "on tcp://127.0.0.1:" in done.stderr         # the attempts ran on the Dask workers
    got, want = read_parts(out), read_parts(local)
    assert got == want and got and any(got.values())
    assert (out / "_SUCCESS").is_file()
    if case == "bad records skipped":
        assert "skipped_records" in done.stderr and "2" in done.stderr, done.stderr
