"""Bad input fails the job with one clear message and exit 1, and commits nothing.

Every failing run goes to an --out that already holds the part files of an earlier
successful run of the same job name: they must come through byte for byte, with no
staging directory or temporary file left beside them.
"""
from __future__ import annotations

import pathlib
import re
import textwrap

import pytest

JOB = "job"

WORDMAP = "def map(key, value):\n    return [(w, 1) for w in value.split()]\n"
SUMREDUCE = "def reduce(key, values):\n    return sum(values)\n"


@pytest.fixture
def disk(tmp_path: pathlib.Path) -> pathlib.Path:
    d = tmp_path / "disk"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("alpha beta gamma\nalpha\n")
    (d / "b.txt").write_text("beta délta\n")
    (d / "sub" / "c.txt").write_text("gamma gamma\n")
    return d


@pytest.fixture
def script(tmp_path: pathlib.Path):
    """Write a job script; returns its path."""
    def write(name: str, text: str, executable: bool = False) -> pathlib.Path:
        p = tmp_path / "scripts" / name
        p.parent.mkdir(exist_ok=True)
        p.write_text(textwrap.dedent(text))
        if executable:
            p.chmod(0o755)
        return p
    return write


@pytest.fixture
def out(tmp_path, cli, disk, script, parts):
    """An --out holding the committed parts of an earlier successful run of job `job`."""
    o = tmp_path / "out"
    res = cli("mapreduce", script("okmap.py", WORDMAP), script("okreduce.py", SUMREDUCE), disk,
              "-R", 2, "--out", o, "--name", JOB, "-q", "-j", 1)
    assert res.exit_code == 0, res.stderr
    before = parts(o)
    assert sorted(before) == ["part-00000", "part-00001"]
    return o, before


def _fails(res, *needles: str, status: int = 1) -> list[str]:
    stderr = res.stderr
    assert res.exit_code == status, (res.exit_code, res.stdout, stderr)
    lines = stderr.splitlines()
    assert lines and lines[0].startswith("geryon: "), stderr
    for needle in needles:
        assert needle in stderr, f"{needle!r} not in {stderr!r}"
    return lines


def _mapreduce(cli, out_dir, map_path, reduce_path, *disks, extra=()):
    return cli("mapreduce", map_path, reduce_path, *disks, "-R", 2, "--out", out_dir, "--name", JOB, "-q", *extra)


# -- disks ---------------------------------------------------------------------------------

def test_malformed_ndb_names_file_and_line(cli, tmp_path, disk, script, out, assert_nothing_committed, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "bad.ndb"
    db.write_text(f"name=d0 kfs\n\tpath={disk}\nname=\"unterminated\n")
    o, before = out
    res = _mapreduce(cli, o, script("m.py", WORDMAP), script("r.py", SUMREDUCE), "d0", extra=["--ndb", db])
    _fails(res, "bad.ndb:3")
    assert_nothing_committed(o, before)


def test_unknown_disk_is_named(cli, tmp_path, disk, script, out, assert_nothing_committed, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "good.ndb"
    db.write_text(f"name=d0 kfs\n\tpath={disk}\n")
    o, before = out
    res = _mapreduce(cli, o, script("m.py", WORDMAP), script("r.py", SUMREDUCE), "d0", "nosuch.disk",
                     extra=["--ndb", db])
    _fails(res, "nosuch.disk")
    assert_nothing_committed(o, before)


def test_disk_named_in_ndb_runs(cli, tmp_path, disk, script, parts, monkeypatch):
    """The control for the two tests above: the same ndb entry, well formed, works."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "good.ndb"
    db.write_text("name=d0 kfs\n\tpath=disk\n")  # relative to the ndb file
    res = _mapreduce(cli, tmp_path / "o2", script("m.py", WORDMAP), script("r.py", SUMREDUCE), "d0",
                     extra=["--ndb", db])
    assert res.exit_code == 0, res.stderr
    text = b"".join(parts(tmp_path / "o2").values()).decode()
    assert sorted(text.splitlines()) == sorted(["alpha\t2", "beta\t2", "gamma\t3", "délta\t1"])


# -- user code failing ------------------------------------------------------------------------

RAISING_MAP = """
def map(key, value):
    if key.endswith("b.txt"):
        raise ValueError("boom on purpose")
    return [(w, 1) for w in value.split()]
"""

RAISING_REDUCE = """
def reduce(key, values):
    if key == "gamma":
        return sum(values) / 0
    return sum(values)
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_map_raising_names_task_file_exception_and_traceback(cli, disk, script, out, workers,
                                                             assert_nothing_committed):
    o, before = out
    res = _mapreduce(cli, o, script("map.py", RAISING_MAP), script("r.py", SUMREDUCE), disk,
                     extra=["-j", workers])
    lines = _fails(res, "map task m", "b.txt", "ValueError: boom on purpose")
    assert any('map.py", line' in line for line in lines[1:]), lines  # a traceback line of the user's file
    assert_nothing_committed(o, before)


@pytest.mark.parametrize("workers", [1, 2])
def test_reduce_raising_names_task_key_and_exception(cli, disk, script, out, workers, assert_nothing_committed):
    o, before = out
    res = _mapreduce(cli, o, script("m.py", WORDMAP), script("reduce.py", RAISING_REDUCE), disk,
                     extra=["-j", workers])
    lines = _fails(res, "reduce task r", "'gamma'", "ZeroDivisionError")
    assert any('reduce.py", line' in line for line in lines[1:]), lines
    assert_nothing_committed(o, before)


def test_non_utf8_input_names_the_file(cli, disk, script, out, assert_nothing_committed):
    (disk / "sub" / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    o, before = out
    res = _mapreduce(cli, o, script("m.py", WORDMAP), script("r.py", SUMREDUCE), disk)
    _fails(res, "sub/latin1.txt", "UTF-8")
    assert_nothing_committed(o, before)


def test_missing_script(cli, disk, tmp_path, script, out, assert_nothing_committed):
    o, before = out
    res = _mapreduce(cli, o, tmp_path / "nosuch.py", script("r.py", SUMREDUCE), disk)
    _fails(res, "nosuch.py")
    assert_nothing_committed(o, before)


def test_missing_streaming_executable(cli, disk, tmp_path, out, assert_nothing_committed):
    o, before = out
    res = _mapreduce(cli, o, tmp_path / "bin" / "nosuch-mapper", "cat", disk, extra=["--streaming"])
    _fails(res, "nosuch-mapper")
    assert_nothing_committed(o, before)


def test_streaming_command_exiting_nonzero_shows_stderr_tail(cli, disk, out, assert_nothing_committed):
    o, before = out
    res = _mapreduce(cli, o, "{ cat >/dev/null; echo first line >&2; echo it went wrong >&2; exit 3 }", "cat",
                     disk, extra=["--streaming"])
    _fails(res, "map task m", "exit status 3", "it went wrong", "first line")
    assert_nothing_committed(o, before)


def test_streaming_reduce_exiting_nonzero(cli, disk, wordcount, out, assert_nothing_committed):
    o, before = out
    res = _mapreduce(cli, o, wordcount / "map.sh", "{ cat >/dev/null; echo reducer broke >&2; exit 7 }",
                     disk, extra=["--streaming"])
    _fails(res, "reduce task r", "exit status 7", "reducer broke")
    assert_nothing_committed(o, before)


@pytest.mark.parametrize("body,needle", [
    ('    yield ("a", 1, 2)\n', "pairs"),
    ('    yield "a", 1\n    yield 5\n', "pairs"),
    ('    return [("a", 1), 5]\n', "pairs"),
    ('    return ["a", ("b", 1)]\n', "pairs"),
], ids=["triple", "int-after-pair", "list-with-int", "str-item"])
def test_map_yielding_non_pairs_fails(cli, disk, script, out, body, needle, assert_nothing_committed):
    o, before = out
    res = _mapreduce(cli, o, script("map.py", "def map(key, value):\n" + body), script("r.py", SUMREDUCE), disk)
    _fails(res, "map task m", needle)
    assert_nothing_committed(o, before)


def test_typeerror_inside_a_map_generator_fails_the_job(cli, disk, script, out, assert_nothing_committed):
    """A TypeError raised by the user's own generator is the user's error, not a hint to retry slowly."""
    o, before = out
    mapper = script("map.py", """
        def map(key, value):
            yield "a", 1
            yield "b", len(None)
    """)
    res = _mapreduce(cli, o, mapper, script("r.py", SUMREDUCE), disk)
    _fails(res, "map task m", "TypeError")
    assert_nothing_committed(o, before)


def test_unsupported_key_type(cli, disk, script, out, assert_nothing_committed):
    o, before = out
    mapper = script("map.py", "def map(key, value):\n    yield object(), 1\n")
    res = _mapreduce(cli, o, mapper, script("r.py", SUMREDUCE), disk)
    _fails(res, "map task m", "object")
    assert_nothing_committed(o, before)


def test_reduce_yielding_non_pairs(cli, disk, script, out, assert_nothing_committed):
    o, before = out
    reducer = script("reduce.py", "def reduce(key, values):\n    yield key\n")
    res = _mapreduce(cli, o, script("m.py", WORDMAP), reducer, disk)
    _fails(res, "reduce task r", "pairs")
    assert_nothing_committed(o, before)


# -- a full output disk ---------------------------------------------------------------------

def test_full_output_disk(cli, tmp_path, disk, script, parts, assert_nothing_committed):
    tiny = tmp_path / "tiny"
    res = cli("disk", "new", tiny, "--size", "4k")
    assert res.exit_code == 0, res.stderr
    # A first run fits and is committed on the chunk.
    res = _mapreduce(cli, tiny, script("m.py", WORDMAP), script("r.py", SUMREDUCE), disk)
    assert res.exit_code == 0, res.stderr
    before = parts(tiny)
    assert len(before) == 2
    # A second run of the same job writes far more than 4k.
    (disk / "big.txt").write_text(" ".join(f"word{i}" for i in range(3000)))
    res = _mapreduce(cli, tiny, script("m.py", WORDMAP), script("r.py", SUMREDUCE), disk)
    _fails(res, "disk full")
    assert_nothing_committed(tiny, before)
    info = cli("disk", "info", tiny)
    assert info.exit_code == 0 and "capacity 4096" in info.stdout


# -- real processes: exit codes as a shell sees them -----------------------------------------

def test_exit_codes_in_a_real_process(geryon_proc, tmp_path, disk, script, out, assert_nothing_committed):
    o, before = out
    base = ["mapreduce", "--out", o, "--name", JOB, "-q", "-R", "2"]
    proc = geryon_proc(*base, script("map.py", RAISING_MAP), script("r.py", SUMREDUCE), disk, "-j", "2")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("geryon: map task m") and "ValueError: boom on purpose" in proc.stderr
    proc = geryon_proc(*base, "{ exit 4 }", "cat", disk, "--streaming")
    assert proc.returncode == 1 and "exit status 4" in proc.stderr, proc.stderr
    proc = geryon_proc(*base, script("m.py", WORDMAP), script("r.py", SUMREDUCE), disk, "-R", "0")
    assert proc.returncode == 2, proc.stderr  # a usage error
    assert_nothing_committed(o, before)


@pytest.mark.parametrize("words", [450, 3000])
def test_full_output_disk_streaming_reduce(cli, tmp_path, disk, wordcount, parts, assert_nothing_committed, words):
    """A streaming reducer's output arrives line by line: the capacity must hold all the same."""
    tiny = tmp_path / "tiny"
    assert cli("disk", "new", tiny, "--size", "4k").exit_code == 0
    res = _mapreduce(cli, tiny, wordcount / "map.sh", wordcount / "reduce.sh", disk, extra=["--streaming"])
    assert res.exit_code == 0, res.stderr
    before = parts(tiny)
    (disk / "big.txt").write_text(" ".join(f"word{i}" for i in range(words)))  # > 4k of output
    res = _mapreduce(cli, tiny, wordcount / "map.sh", wordcount / "reduce.sh", disk, extra=["--streaming"])
    committed = sum(len(b) for b in parts(tiny).values())
    assert committed <= 4096, f"{committed} bytes committed on a 4096-byte chunk"
    _fails(res, "disk full")
    assert_nothing_committed(tiny, before)


# -- nothing left behind outside --out either -------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_failed_job_leaves_no_work_files(cli, tmp_path, disk, script, monkeypatch, workers):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for i in range(8):
        (disk / f"more{i}.txt").write_text("x y z\n" * 50)
    res = _mapreduce(cli, tmp_path / "o", script("map.py", RAISING_MAP), script("r.py", SUMREDUCE), disk,
                     extra=["-j", workers, "--split-size", "64"])
    _fails(res, "ValueError: boom on purpose")
    assert list(scratch.iterdir()) == []
    res = _mapreduce(cli, tmp_path / "o", script("m.py", WORDMAP), script("r.py", SUMREDUCE), disk,
                     extra=["-j", workers, "--split-size", "64"])
    assert res.exit_code == 0, res.stderr
    assert list(scratch.iterdir()) == []


def test_non_utf8_input_with_lines_reader_names_file_and_bytes_reader_reads_it(cli, tmp_path, disk, script,
                                                                               text_records):
    (disk / "bin.dat").write_bytes(b"ok line\n\xff\xfe broken\n")
    res = _mapreduce(cli, tmp_path / "o1", script("m.py", WORDMAP), script("r.py", SUMREDUCE), disk,
                     extra=["--reader", "lines"])
    _fails(res, "bin.dat", "UTF-8")
    sizes = script("sizes.py", "def map(key, value):\n    yield key.rpartition('/')[2], len(value)\n")
    res = _mapreduce(cli, tmp_path / "o2", sizes, script("r.py", SUMREDUCE), disk, extra=["--reader", "bytes"])
    assert res.exit_code == 0, res.stderr
    assert dict(text_records(tmp_path / "o2"))["bin.dat"] == "18"


# -- a worker process dying -------------------------------------------------------------------

DYING_MAP = """
import os

def map(key, value):
    if key.endswith("b.txt"):
        marker = os.path.join({marker!r}, "died-once")
        if {always} or not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(3)  # the worker process dies, as on a segfault or an OOM kill
    return [(w, 1) for w in value.split()]
"""


def test_worker_dying_every_time_fails_with_one_line(geryon_proc, tmp_path, disk, script, out,
                                                     assert_nothing_committed):
    o, before = out
    mapper = script("dies.py", DYING_MAP.format(marker=str(tmp_path), always=True))
    proc = geryon_proc("mapreduce", mapper, script("r.py", SUMREDUCE), disk, "-R", "2", "--out", o,
                       "--name", JOB, "-q", "-j", "2", "--split-size", "16", timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("geryon: WARNING")]
    assert len(errors) == 1 and re.match(r"geryon: .*\bm\d+\b", errors[0]), proc.stderr  # names the task
    assert_nothing_committed(o, before)


def test_worker_dying_once_is_retried(geryon_proc, tmp_path, disk, script, text_records):
    mapper = script("dies.py", DYING_MAP.format(marker=str(tmp_path), always=False))
    o = tmp_path / "o"
    proc = geryon_proc("mapreduce", mapper, script("r.py", SUMREDUCE), disk, "-R", "2", "--out", o,
                       "--name", JOB, "-q", "-j", "2", "--split-size", "16", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "died-once").exists()
    assert dict(text_records(o)) == {"alpha": "2", "beta": "2", "gamma": "3", "délta": "1"}


@pytest.mark.parametrize("split_size", ["64M", "100", "97"])
def test_non_utf8_message_gives_the_file_offset_of_the_bad_byte(cli, tmp_path, script, split_size):
    d = tmp_path / "nu"
    d.mkdir()
    data = b"".join(b"line %03d xxxxxxxx\n" % i for i in range(100))
    data = data[:1007] + b"\xff" + data[1008:]
    (d / "f.txt").write_bytes(data)
    res = _mapreduce(cli, tmp_path / "o", script("m.py", WORDMAP), script("r.py", SUMREDUCE), d,
                     extra=["--reader", "lines", "--split-size", split_size])
    _fails(res, "f.txt", "byte 1007")


def test_commit_blocked_by_a_directory_commits_nothing(cli, tmp_path, disk, script, out):
    """A part name taken by a directory: one clear error, and no part renamed into place."""
    o, before = out
    (o / "part-00001").unlink()
    (o / "part-00001").mkdir()
    (disk / "a.txt").write_text("changed input\n")
    res = _mapreduce(cli, o, script("m.py", WORDMAP), script("r.py", SUMREDUCE), disk)
    _fails(res, "part-00001")
    assert (o / "part-00000").read_bytes() == before["part-00000"]
    assert not [p for p in o.rglob("*") if ".geryon-tmp-" in p.name]


@pytest.mark.parametrize("text,needles", [
    ("def map(key, value)\n    return {}\n", ["broken.py", "SyntaxError"]),
    ("def mapper_typo(key, value):\n    return {}\n", ["broken.py", "map(key, value)"]),
    ("raise ImportError('no such helper')\n", ["broken.py", "no such helper"]),
], ids=["syntax-error", "no-map-function", "import-fails"])
def test_bad_map_script(cli, disk, script, out, text, needles, assert_nothing_committed):
    o, before = out
    res = _mapreduce(cli, o, script("broken.py", text), script("r.py", SUMREDUCE), disk)
    _fails(res, *needles)
    assert_nothing_committed(o, before)


def test_non_executable_streaming_script(cli, disk, script, out, assert_nothing_committed):
    o, before = out
    res = _mapreduce(cli, o, script("map.sh", "#!/bin/sh\ncat\n"), "cat", disk, extra=["--streaming"])
    _fails(res, "map.sh", "not executable")
    assert_nothing_committed(o, before)


# -- Ctrl-C -----------------------------------------------------------------------------------

SLOW_MAP = """
import os, time

def map(key, value):
    open(os.path.join({marker!r}, "started-" + str(os.getpid())), "w").close()
    time.sleep(60)
    return {{}}
"""


@pytest.mark.parametrize("workers,split", [("1", "16"), ("2", "16"), ("2", "64M")],
                         ids=["inline", "workers-busy", "worker-idle"])
def test_ctrl_c_stops_quickly_with_one_line_and_commits_nothing(tmp_path, disk, script, out, workers, split,
                                                                assert_nothing_committed):
    """SIGINT to the job's process group, as a terminal's Ctrl-C sends it (idle workers get it too)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    o, before = out
    marks = tmp_path / "marks"
    marks.mkdir()
    mapper = script("slow.py", SLOW_MAP.format(marker=str(marks)))
    proc = subprocess.Popen(
        [sys.executable, "-c", "from geryon.cli import main; main()", "mapreduce", str(mapper),
         str(script("r.py", SUMREDUCE)), str(disk), "-R", "2", "--out", str(o), "--name", JOB, "-q",
         "-j", workers, "--split-size", split],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not list(marks.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(marks.iterdir()), "the map never started"
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["geryon: interrupted; nothing committed"], stderr
    assert_nothing_committed(o, before)
