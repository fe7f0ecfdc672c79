"""Job inputs and outputs as a user gives and reads them: single files, globs, exact JSON bytes.

Each job runs as a real `geryon mapreduce` process with a fresh HOME (no secret: no cluster of
ours can answer, so the local rule applies without waiting).
"""
from __future__ import annotations

import base64
import json
import pathlib
import subprocess
from collections.abc import Callable

import pytest

from geryon.mapreduce.codec import parse_line

MAP = "def map(key, value):\n    for w in value.split():\n        yield w, 1\n"
REDUCE = "def reduce(key, values):\n    return sum(values)\n"
BYTES_MAP = ("def map(key, value):\n"
             "    yield b'\\xff\\x00raw', b'\\x80v'\n"
             "    yield [b'\\x01', 'two'], 1\n")
BYTES_REDUCE = "def reduce(key, values):\n    return list(values)[0]\n"

Run = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def job(tmp_path: pathlib.Path, geryon_proc: Run) -> Callable[..., subprocess.CompletedProcess]:
    (tmp_path / "map.py").write_text(MAP)
    (tmp_path / "reduce.py").write_text(REDUCE)
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("apple pear apple\n")
    (data / "b.txt").write_text("pear fig\n")
    (data / "c.log").write_text("kiwi\n")
    (data / "sub" / "d.txt").write_text("plum\n")
    env = {"HOME": str(tmp_path / "home"), "GERYON_JOBS_DIR": str(tmp_path / "jobs")}

    def run(*args: str, cwd: pathlib.Path = tmp_path) -> subprocess.CompletedProcess:
        return geryon_proc("mapreduce", "-q", *args, env=env, cwd=str(cwd))
    return run


def _counts(out: pathlib.Path) -> dict[str, int]:
    got: dict[str, int] = {}
    for part in sorted(out.glob("part-*")):
        for line in part.read_text().splitlines():
            k, v = line.split("\t")
            got[k] = int(v)
    return got


def test_a_single_file_is_an_input(job: Run, tmp_path: pathlib.Path) -> None:
    r = job("--out", "one.out", "map.py", "reduce.py", "data/a.txt")
    assert r.returncode == 0, r.stderr
    assert _counts(tmp_path / "one.out") == {"apple": 2, "pear": 1}      # its siblings are not read
    # from inside the file's directory, the default output (./JOB.out) sits beside it: allowed
    r = job("--name", "beside", str(tmp_path / "map.py"), str(tmp_path / "reduce.py"), "b.txt", cwd=tmp_path / "data")
    assert r.returncode == 0, r.stderr
    assert _counts(tmp_path / "data" / "beside.out") == {"pear": 1, "fig": 1}


def test_a_glob_is_expanded_by_geryon(job: Run, tmp_path: pathlib.Path) -> None:
    r = job("--out", "glob.out", "map.py", "reduce.py", "data/*.txt")
    assert r.returncode == 0, r.stderr
    assert _counts(tmp_path / "glob.out") == {"apple": 2, "pear": 2, "fig": 1}
    r = job("--out", "all.out", "map.py", "reduce.py", "data/*")            # files and a directory
    assert r.returncode == 0, r.stderr
    assert _counts(tmp_path / "all.out") == {"apple": 2, "pear": 2, "fig": 1, "kiwi": 1, "plum": 1}


def test_a_glob_matching_nothing_is_one_line(job: Run) -> None:
    r = job("map.py", "reduce.py", "data/*.csv")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("geryon: data/*.csv: no file or directory matches")


def test_json_output_keeps_bytes_exact(job: Run, tmp_path: pathlib.Path) -> None:
    (tmp_path / "bmap.py").write_text(BYTES_MAP)
    (tmp_path / "breduce.py").write_text(BYTES_REDUCE)
    r = job("--format", "json", "-R", "1", "--out", "b.out", "bmap.py", "breduce.py", "data/a.txt")
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "b.out" / "part-00000").read_text().splitlines()
    pairs = [parse_line(line, "json") for line in lines]
    assert sorted(pairs, key=repr) == sorted([((b"\x01", "two"), 1), (b"\xff\x00raw", b"\x80v")], key=repr)
    # the documented encoding: bytes are {"b64": BASE64}, readable by any JSON reader
    raw = [json.loads(line.split("\t")[0]) for line in lines]
    assert {"b64": base64.b64encode(b"\xff\x00raw").decode()} in raw
