"""A job's output as data, in local mode: `part-0000r` and `_SUCCESS` in the output directory,
never inside an input disk, readable by the next job (as a directory or `geryon-output-of-JOB`),
removed with `geryon rm`; the printed job id is the recorded one, and what the job's code
prints goes to its log and stderr, never among the `output:` lines."""
from __future__ import annotations

import json
import pathlib

MAP = '''import sys
from collections import Counter


def map(key, value):
    print("looking at", key)                 # user stdout: not the job's output
    print("on stderr too", file=sys.stderr)
    return Counter(value.split())


def reduce(key, values):
    return sum(values)
'''

LENGTHS = '''def map(key, value):
    word, n = value.split("\\t")
    yield len(word), int(n)


def reduce(key, values):
    return sum(values)
'''


def _setup(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    disk = tmp_path / "in"
    disk.mkdir()
    (disk / "a.txt").write_text("red green red\nblue\n")
    (disk / "b.txt").write_text("green blue blue blue\n")
    (tmp_path / "wc.py").write_text(MAP)
    (tmp_path / "len.py").write_text(LENGTHS)
    return disk, tmp_path / "wc.py", tmp_path / "len.py"


def _lines(out: pathlib.Path) -> dict[str, int]:
    got = {}
    for p in sorted(out.glob("part-*")):
        for line in p.read_text().splitlines():
            k, v = line.split("\t")
            got[k] = int(v)
    return got


def test_output_dir_chained_job_logs_and_rm(geryon_proc, tmp_path):
    disk, wc, lengths = _setup(tmp_path)
    jobs = tmp_path / "jobs"
    env = {"GERYON_JOBS_DIR": str(jobs)}
    run = geryon_proc("mapreduce", "-R", "2", "-j", "2", "--out", tmp_path / "o1", wc, wc, disk, env=env,
                      cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["output: o1", "o1/part-00000", "o1/part-00001"]   # no user prints
    assert "m0.a0: looking at in/a.txt" in run.stderr or "m0.a0: looking at in/b.txt" in run.stderr
    assert sorted(p.name for p in (tmp_path / "o1").iterdir()) == ["_SUCCESS", "part-00000", "part-00001"]
    assert _lines(tmp_path / "o1") == {"red": 2, "green": 2, "blue": 4}
    job_id = next(line.split()[1].rstrip(":") for line in run.stderr.splitlines() if line.startswith("job "))
    assert json.loads((tmp_path / "o1" / "_SUCCESS").read_text())["job"] == job_id
    logs = geryon_proc("logs", job_id, env=env)        # the printed id is the recorded one
    assert logs.returncode == 0, logs.stderr
    assert "looking at" in logs.stdout and "on stderr too" in logs.stdout
    shown = geryon_proc("jobs", job_id, env=env)
    assert f"as input: geryon-output-of-{job_id}" in shown.stdout and str(tmp_path / "o1") in shown.stdout
    # the output is the next job's input, by its directory or its name; _SUCCESS is not a record
    for source in (str(tmp_path / "o1"), f"geryon-output-of-{job_id}"):
        out = tmp_path / f"o2-{len(source)}"
        chained = geryon_proc("mapreduce", "-q", "--reader", "lines", "-R", "1", "--out", out, lengths, lengths,
                              source, env=env, cwd=str(tmp_path))
        assert chained.returncode == 0, chained.stderr
        assert _lines(out) == {"3": 2, "4": 4, "5": 2}
    removed = geryon_proc("rm", job_id, env=env)
    assert removed.returncode == 0, removed.stderr
    assert not (tmp_path / "o1").exists()
    again = geryon_proc("mapreduce", "-q", lengths, lengths, f"geryon-output-of-{job_id}", env=env,
                        cwd=str(tmp_path))
    assert again.returncode == 1
    assert again.stderr.strip() == f"geryon: geryon-output-of-{job_id}: the output of job {job_id} was removed (geryon rm)"
    assert "output      removed" in geryon_proc("jobs", job_id, env=env).stdout


def test_out_inside_an_input_disk_is_refused(geryon_proc, tmp_path):
    disk, wc, _ = _setup(tmp_path)
    before = sorted(p.name for p in disk.iterdir())
    for out in (disk / "out", disk):
        run = geryon_proc("mapreduce", "-q", "--out", out, wc, wc, disk, env={"GERYON_JOBS_DIR": str(tmp_path / "j")})
        assert run.returncode == 1
        assert run.stderr.startswith(f"geryon: output directory {out} is inside input disk in ") and \
            len(run.stderr.strip().splitlines()) == 1, run.stderr
    # the default ./NAME.out from inside the disk too
    run = geryon_proc("mapreduce", "-q", wc, wc, ".", cwd=str(disk), env={"GERYON_JOBS_DIR": str(tmp_path / "j")})
    assert run.returncode == 1 and "is inside input disk" in run.stderr, run.stderr
    assert sorted(p.name for p in disk.iterdir()) == before


def test_mistyped_disk_beside_a_local_one_fails_at_once_and_is_not_recorded(geryon_proc, tmp_path):
    disk, wc, _ = _setup(tmp_path)
    jobs = tmp_path / "jobs"
    run = geryon_proc("mapreduce", "-q", wc, wc, disk, "d0.mbx", env={"GERYON_JOBS_DIR": str(jobs)},
                      cwd=str(tmp_path))
    assert run.returncode == 1
    assert run.stderr.strip().startswith("geryon: d0.mbx: unknown disk"), run.stderr
    assert not jobs.exists() or not [p for p in jobs.iterdir() if not p.name.startswith(".")]


def test_two_jobs_committing_into_one_directory_never_mix(tmp_path):
    """The commit is all or nothing under a lock: the later job's parts replace the whole set."""
    from geryon.mapreduce import outdir

    out = tmp_path / "out"
    out.mkdir()
    for job, r in (("a", 3), ("b", 2)):
        staged = []
        for i in range(r):
            p = out / f".geryon-tmp-{job}{i}"
            p.write_text(f"{job}{i}\n")
            staged.append(str(p))
        outdir.commit(str(out), staged, job, "same-name")
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "part-00000", "part-00001"]
    assert [p.read_text() for p in sorted(out.glob("part-*"))] == ["b0\n", "b1\n"]
    assert json.loads((out / "_SUCCESS").read_text())["job"] == "b"
