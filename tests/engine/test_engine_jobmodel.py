"""The job model beyond map + reduce, in local mode, against sequential references: map-only jobs
(`-R 0`, REDUCE `NONE`), and their bad input. (The same jobs on a cluster: tests/faults/test_faults_jobmodel.py.)"""
from __future__ import annotations

import json
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geryon.errors import JobDefinitionError
from geryon.mapreduce.job import Job

LINE_MAP = '''
def map(key, value):
    for line in value.splitlines():
        yield line[::-1], len(line)
'''


def upper_map(key, value):
    yield value.upper(), len(value)


def _disks(root: pathlib.Path, layout: dict[str, dict[str, str]]) -> list[pathlib.Path]:
    """Directory disks, in the order given (not alphabetical), with the files given."""
    out = []
    for disk, files in layout.items():
        d = root / disk
        d.mkdir(parents=True)
        for name, text in files.items():
            (d / name).write_text(text)
        out.append(d)
    return out


LAYOUT = {
    "zeta disk": {"b file.txt": "one\ntwo\tTAB\nthree\n", "a.txt": "alpha\nbeta\n"},
    "alpha": {"x.txt": "".join(f"line {i}\n" for i in range(40)), "y y.txt": "last\n"},
}


def _sequential(disks: list[pathlib.Path]) -> list[str]:
    """Every input line, disk order then file name order: what a map-only job's parts hold, in order."""
    return [line for d in disks for f in sorted(d.iterdir()) for line in f.read_text().splitlines()]


def _part_lines(out: pathlib.Path) -> list[list[str]]:
    parts = sorted(p for p in out.iterdir() if p.name.startswith("part-"))
    return [p.read_text().splitlines() for p in parts]


def test_map_only_api_writes_one_part_per_map_task_in_input_order(tmp_path: pathlib.Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    disks = _disks(tmp_path / "in", LAYOUT)
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "lines.py").write_text(LINE_MAP)
    from geryon.mapreduce.job import load_script

    script = load_script(str(tmp_path / "job" / "lines.py"))
    job = Job(map=script.map, partitions=0, reader="file", split_size=40, format="json")
    result = job.run([str(d) for d in disks], out=str(tmp_path / "out"), workers=2)
    assert len(result.parts) == result.report.map.tasks > 2
    want = [(line[::-1], len(line)) for line in _sequential(disks)]
    assert list(result) == want           # parts in map-task order, each in input order
    assert all(lines for lines in _part_lines(tmp_path / "out"))   # every map task has its own part
    assert [json.loads(ln.split("\t")[0]) for p in _part_lines(tmp_path / "out") for ln in p] == [k for k, _ in want]


def test_map_only_streaming_cli_keeps_the_mappers_lines_unchanged(tmp_path: pathlib.Path, geryon_proc) -> None:
    disks = _disks(tmp_path / "in", LAYOUT)
    for args in (("-R", "0"), ()):
        out = tmp_path / f"out{len(args)}"
        proc = geryon_proc("mapreduce", "-q", *args, "--local", "--reader", "lines", "--split-size", "30",
                           "--out", out, "{ tr a-z A-Z }", "NONE", *disks, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        parts = _part_lines(out)
        assert len(parts) > 2
        assert [ln for p in parts for ln in p] == [ln.upper() for ln in _sequential(disks)]
        assert (out / "_SUCCESS").exists()


def test_map_only_python_cli_text(tmp_path: pathlib.Path, geryon_proc) -> None:
    disks = _disks(tmp_path / "in", LAYOUT)
    (tmp_path / "lines.py").write_text(LINE_MAP)
    proc = geryon_proc("mapreduce", "-q", "--local", "--out", tmp_path / "out", "lines.py", "NONE", *disks,
                       cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    got = [ln for p in _part_lines(tmp_path / "out") for ln in p]
    # text format escapes the tab inside a key (`two\tTAB` reversed)
    want = [f"{line[::-1]}\t{len(line)}".replace("BAT\towt", "BAT\\towt") for line in _sequential(disks)]
    assert got == want


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
                               min_size=0, max_size=30), min_size=1, max_size=5),
       split=st.integers(min_value=1, max_value=400))
def test_map_only_equals_the_sequential_map(tmp_path_factory, files, split) -> None:
    """Random lines in random files, random split sizes: the parts, in order, are the map over
    the input in order (the hypothesis reference)."""
    root = tmp_path_factory.mktemp("maponly")
    disk = root / "d"
    disk.mkdir()
    for i, lines in enumerate(files):
        (disk / f"f{i:02d}").write_text("".join(line + "\n" for line in lines))
    job = Job(map=upper_map, partitions=0, reader="lines", split_size=split, format="json")
    result = job.run([str(disk)], out=str(root / "out"), workers=2)
    assert list(result) == [(line.upper(), len(line)) for lines in files for line in lines]
    assert len(result.parts) == result.report.map.tasks


@pytest.mark.parametrize("args, message", [
    (("-R", "0", "m.py", "m.py"), "-R 0 is a map-only job, but REDUCE is m.py: give NONE as REDUCE"),
    (("-R", "3", "m.py", "NONE"), "REDUCE is NONE, a map-only job: -R 3 has no reduce to run (drop -R)"),
    (("-R", "-1", "m.py", "NONE"), "-1 is not in the range x>=0"),
])
def test_map_only_bad_arguments_fail_in_one_line_and_write_nothing(tmp_path: pathlib.Path, geryon_proc, args,
                                                                    message) -> None:
    disks = _disks(tmp_path / "in", LAYOUT)
    (tmp_path / "m.py").write_text(LINE_MAP + "\ndef reduce(key, values):\n    return sum(values)\n")
    proc = geryon_proc("mapreduce", "-q", "--local", "--out", tmp_path / "out", *args, *disks, cwd=str(tmp_path))
    assert proc.returncode == 2   # usage errors
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_map_only_job_definitions_refused() -> None:
    with pytest.raises(JobDefinitionError, match="map-only job .* runs no reduce"):
        Job(map=upper_map, reduce=upper_map, partitions=0)
    with pytest.raises(JobDefinitionError, match="runs no combiner"):
        Job(map=upper_map, combine=upper_map, partitions=0)
    with pytest.raises(JobDefinitionError, match="partitions must be 0"):
        Job(map=upper_map, partitions=-1)


def test_grep_example_is_map_only_in_input_order(tmp_path: pathlib.Path, geryon_proc, examples) -> None:
    """examples/grep: the matching lines of d1.mbox then d0.mbox (disks in that order), in order."""
    disks = [examples / "disks" / "d1.mbox", examples / "disks" / "d0.mbox"]
    proc = geryon_proc("mapreduce", "-q", "--local", "--reader", "lines", "-D", "pattern=^(From|Subject):",
                       "--out", tmp_path / "out", examples / "grep" / "map.py", "NONE", *disks, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    got = [ln for p in _part_lines(tmp_path / "out") for ln in p]
    want = [f"{d.name}/{f.name}\t{line}" for d in disks for f in sorted(d.iterdir())
            for line in f.read_text().splitlines() if line.startswith(("From:", "Subject:"))]
    assert got == want and len(want) > 10
