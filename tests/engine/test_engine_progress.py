"""The progress lines a job prints: the running count never includes attempts that have ended."""
from __future__ import annotations

import io
import pathlib
import re

import geryon
from geryon.cli.progress import LineProgress

LINE = re.compile(r"geryon: (map|reduce): (\d+)/(\d+) tasks done, (\d+) running, (\d+) failed")


def words(key, value):
    for w in value.split():
        yield w, 1


def total(key, values):
    return sum(values)


def test_running_counts_exclude_ended_attempts(tmp_path: pathlib.Path) -> None:
    disk = tmp_path / "in put"
    disk.mkdir()
    for i in range(4):
        (disk / f"f{i}.txt").write_text(f"w{i} common\n" * 50)
    out = io.StringIO()
    geryon.Job(map=words, reduce=total, name="prog", partitions=3, split_size=200).run(
        [str(disk)], out=str(tmp_path / "out"), workers=2, progress=LineProgress(out, every=0))
    lines = [LINE.match(x) for x in out.getvalue().splitlines()]
    seen = [m.groups() for m in lines if m]
    assert {g[0] for g in seen} == {"map", "reduce"}, out.getvalue()
    for phase, done, tasks, running, _failed in seen:
        assert int(running) <= int(tasks) - int(done), (phase, done, tasks, running, out.getvalue())
    last = {g[0]: g for g in seen}
    assert last["map"][1] == last["map"][2] and int(last["map"][2]) > 1 and last["map"][3] == "0", out.getvalue()
    assert last["reduce"][1:4] == ("3", "3", "0"), out.getvalue()
