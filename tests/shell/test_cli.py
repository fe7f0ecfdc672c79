"""`geryon intermediate|agg|idx`: in process with CliRunner, and in real Unix pipes."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from geryon.cli import main

GERYON = [sys.executable, "-c", "from geryon.cli import main; main(prog_name='geryon')"]
"""The CLI as a command line, independent of where the console script was installed."""

GERYON_SH = " ".join(shlex.quote(a) for a in GERYON)

TEXT = (
    "Call me Ishmael. Some years ago--never mind how long precisely--having little or no\n"
    "money in my purse, and nothing particular to interest me on shore, I thought I would\n"
    "sail about a little and see the watery part of the world... It is a way I have of\n"
    "driving off the spleen, and regulating the circulation. e.g. THE END, the_end 42.\n"
)


def sh(script: str, cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["/bin/sh", "-c", script], cwd=cwd, input=stdin, capture_output=True,
                          timeout=60, check=False)


def oracle_counts(text: str) -> Counter[str]:
    return Counter(re.findall(r"[a-z0-9_]+", text.lower()))


# --- in process ---------------------------------------------------------------------

def test_agg_cli() -> None:
    result = CliRunner().invoke(main, ["agg"], input=b"a 1\na 2\nb 1\n")
    assert result.exit_code == 0
    assert result.stdout_bytes == b"a 3\nb 1\n"


def test_agg_cli_reports_dropped_lines() -> None:
    result = CliRunner().invoke(main, ["agg"], input=b"a 1\noops\n")
    assert result.exit_code == 0
    assert result.stdout_bytes == b"a 1\n"
    assert result.stderr == "agg: dropped 1 line\n"


def test_agg_cli_bad_count_is_one_line_exit_1() -> None:
    result = CliRunner().invoke(main, ["agg"], input=b"a 1\na many\n")
    assert result.exit_code == 1
    assert result.stderr == "Error: agg: line 2: count is not an integer: 'many'\n"


def test_idx_cli() -> None:
    result = CliRunner().invoke(main, ["idx"], input=b"Hello, hello... WORLD_1.\n")
    assert result.exit_code == 0
    assert result.stdout_bytes == b"hello 1\nhello 1\nworld_1 1\n"


def test_intermediate_cli(tmp_path: Path) -> None:
    prefix = str(tmp_path / "p")
    result = CliRunner().invoke(main, ["intermediate", "2", prefix], input=b"a 1\nb 1\nc\n")
    assert result.exit_code == 0
    assert result.stderr == "intermediate: dropped 1 line\n"
    assert (tmp_path / "p0").read_bytes() == b"b 1\n"
    assert (tmp_path / "p1").read_bytes() == b"a 1\n"


@pytest.mark.parametrize("n", ["0", "-1", "x", "1.5"])
def test_intermediate_bad_n_is_usage_error(n: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["intermediate", "--", n, str(tmp_path / "p")])
    assert result.exit_code == 2
    assert "Invalid value for 'N'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_intermediate_missing_prefix_is_usage_error() -> None:
    assert CliRunner().invoke(main, ["intermediate", "3"]).exit_code == 2


def test_intermediate_unwritable_prefix_exit_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["intermediate", "2", str(tmp_path / "no" / "p")], input=b"a 1\n")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: intermediate: cannot create ")
    assert result.stderr.count("\n") == 1


# --- real pipes ---------------------------------------------------------------------

def test_intermediate_in_a_pipe(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    script = (f"printf 'a 1\\nb 2\\nbad\\nc 3 4\\n\\nhello 5\\nab\\t6\\n' "
              f"| {GERYON_SH} intermediate 3 out/p")
    done = sh(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b"intermediate: dropped 3 lines\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0", "p1", "p2"]
    # "a"=97, "b"=98, "hello"=684824882, "ab"=6363201: partitions mod 3 = 1, 2, 2, 0.
    assert (tmp_path / "out" / "p0").read_bytes() == b"ab\t6\n"
    assert (tmp_path / "out" / "p1").read_bytes() == b"a 1\n"
    assert (tmp_path / "out" / "p2").read_bytes() == b"b 2\nhello 5\n"


def test_agg_in_a_pipe(tmp_path: Path) -> None:
    done = sh(f"printf 'x 1\\ny 2\\ny 3\\nz 10\\n' | {GERYON_SH} agg", tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"x 1\ny 5\nz 10\n", b"")


def test_agg_bad_count_in_a_pipe(tmp_path: Path) -> None:
    done = sh(f"printf 'x 1\\nx one\\n' | {GERYON_SH} agg", tmp_path)
    assert done.returncode == 1
    assert done.stderr == b"Error: agg: line 2: count is not an integer: 'one'\n"


def test_idx_sort_agg_equals_counter(tmp_path: Path) -> None:
    (tmp_path / "text").write_text(TEXT * 7)
    done = sh(f"{GERYON_SH} idx < text | LC_ALL=C sort | {GERYON_SH} agg", tmp_path)
    assert done.returncode == 0, done.stderr
    got = {k: int(v) for k, v in (line.split(" ") for line in done.stdout.decode().splitlines())}
    assert got == oracle_counts(TEXT * 7)


def test_mapreduce_by_hand_in_pipes(tmp_path: Path) -> None:
    """The seed's job: idx | intermediate R, then per partition cat | sort | agg."""
    (tmp_path / "text").write_text(TEXT * 3)
    done = sh(f"{GERYON_SH} idx < text | {GERYON_SH} intermediate 5 inter", tmp_path)
    assert done.returncode == 0, done.stderr
    total: Counter[str] = Counter()
    for r in range(5):
        part = sh(f"LC_ALL=C sort inter{r} | {GERYON_SH} agg", tmp_path)
        for line in part.stdout.decode().splitlines():
            key, count = line.split(" ")
            assert key not in total  # each key lives in exactly one partition
            total[key] = int(count)
    assert total == oracle_counts(TEXT * 3)


def test_idx_quiet_when_downstream_closes(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"the quick brown fox jumps over the lazy dog\n" * 200_000)
    with big.open("rb") as src:
        proc = subprocess.Popen(GERYON + ["idx"], stdin=src, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == b"the 1\n"
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
        assert proc.wait(timeout=60) == 0
    assert err == b""


def test_agg_quiet_when_downstream_closes(tmp_path: Path) -> None:
    (tmp_path / "data").write_bytes(b"".join(b"k%07d 1\n" % i for i in range(300_000)))
    script = f"{{ {GERYON_SH} agg < data; echo \"agg=$?\" >&2; }} | head -n 1"
    done = sh(script, tmp_path)
    assert done.stdout == b"k0000000 1\n"
    assert done.stderr == b"agg=0\n"
