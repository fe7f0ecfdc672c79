"""What travels with a job: its scripts and the modules they import, never the rest of its
directory (dotfiles, old results); parameters and task environment in local mode."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from geryon.mapreduce import jobpack
from geryon.mapreduce.job import Job, step_from_arg

GERYON = [sys.executable, "-c", "from geryon.cli import main; main()"]

MAP_WITH_HELPER = '''
import geryon
from helper import words
from pkg.sub import tag

def map(key, value):
    from lazyhelper import suffix       # an import made only when a task runs
    return [(tag(w) + suffix(), 1) for w in words(value)]

def reduce(key, values):
    return sum(values)
'''


def _job_dir(tmp_path: Path) -> Path:
    """A home-like directory: the job, its helpers, secrets and earlier results."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("PRIVATE KEY")
    (home / ".secret").write_text("cluster secret")
    (home / "old.out").mkdir()
    (home / "old.out" / "old.part0").write_text("a\t1\n" * 1000)
    (home / "results.csv").write_text("x,y\n")
    (home / "notes.txt").write_text("notes")
    (home / "map.py").write_text(MAP_WITH_HELPER)
    (home / "helper.py").write_text("def words(text):\n    return text.split()\n")
    (home / "lazyhelper.py").write_text("def suffix():\n    return ''\n")
    (home / "pkg").mkdir()
    (home / "pkg" / "__init__.py").write_text("")
    (home / "pkg" / "sub.py").write_text("from . import inner\ndef tag(w):\n    return inner.up(w)\n")
    (home / "pkg" / "inner.py").write_text("def up(w):\n    return w.upper()\n")
    (home / "pkg" / "unused.py").write_text("raise SystemExit('never imported')\n")
    return home


def _members(pack: jobpack.JobPack) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(pack.data)) as tar:
        return sorted(m.name for m in tar.getmembers())


def test_the_pack_holds_the_job_not_the_directory(tmp_path, monkeypatch):
    home = _job_dir(tmp_path)
    monkeypatch.chdir(home)
    job = Job(map=step_from_arg(str(home / "map.py"), "map"), reduce=step_from_arg(str(home / "map.py"), "reduce"))
    names = _members(jobpack.build(job))
    assert names == ["geryon-job.json", "helper.py", "lazyhelper.py", "map.py", "pkg/__init__.py",
                     "pkg/inner.py", "pkg/sub.py"]


def test_named_files_travel_and_dotfiles_only_when_named(tmp_path):
    home = _job_dir(tmp_path)
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "extra.py").write_text("import extra2\n")
    (lib / "extra2.py").write_text("")
    step = step_from_arg(str(home / "map.py"), "map")
    job = Job(map=step, files=(str(home / "notes.txt"), str(home / ".secret")), py_files=(str(lib / "extra.py"),))
    names = _members(jobpack.build(job))
    assert {"notes.txt", ".secret", "extra.py", "extra2.py", "map.py", "helper.py"} <= set(names)
    assert not [n for n in names if n.startswith((".ssh", "old.out", "results"))]


def test_a_large_imported_module_must_be_named(tmp_path):
    home = _job_dir(tmp_path)
    (home / "helper.py").write_text("def words(text):\n    return text.split()\n" + "#" * 5000 + "\n")
    job = Job(map=step_from_arg(str(home / "map.py"), "map"))
    with pytest.raises(jobpack.JobPackError, match="--py-files"):
        jobpack.build(job, max_found=4096)
    assert "helper.py" in _members(jobpack.build(Job(map=job.map, py_files=(str(home / "helper.py"),)),
                                                 max_found=4096))


def test_the_pack_carries_params_and_cmdenv(tmp_path):
    home = _job_dir(tmp_path)
    job = Job(map=step_from_arg(str(home / "map.py"), "map"), params={"minlen": 3}, cmdenv={"LANG": "C"})
    loaded = jobpack.load(jobpack.unpack(jobpack.build(job).data, str(tmp_path / "cache")))
    assert loaded.params == (("minlen", "3"),) and loaded.cmdenv == (("LANG", "C"),)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_") and k != "PYTHONPATH"}
    return env


def test_a_helper_module_imports_locally_without_pythonpath(tmp_path):
    home = _job_dir(tmp_path)
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "a.txt").write_text("x y x\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    proc = subprocess.run([*GERYON, "mapreduce", "-q", "--local", "-R", "1", "--out", str(tmp_path / "out"),
                           "--name", "h", str(home / "map.py"), str(home / "map.py"), str(disk)],
                          capture_output=True, text=True, cwd=elsewhere, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "part-00000").read_text() == "X\t2\nY\t1\n"


PARAM_JOB = '''
import os
import geryon
from geryon import params
AT_IMPORT = geryon.param("minlen", "unset")

def map(key, value):
    n = int(params["minlen"])
    for w in value.split():
        if len(w) >= n:
            yield w, f"{AT_IMPORT}|{os.environ.get('MYVAR', '<unset>')}"

def reduce(key, values):
    return ",".join(sorted(set(values)))
'''


def test_params_and_cmdenv_reach_local_tasks(tmp_path):
    d = tmp_path / "job"
    d.mkdir()
    (d / "p.py").write_text(PARAM_JOB)
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "a.txt").write_text("a bb ccc dddd\n")
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        proc = subprocess.run([*GERYON, "mapreduce", "-q", "--local", "-j", workers, "-R", "1", "--out", str(out),
                               "-D", "minlen=3", "--cmdenv", "MYVAR=hello", str(d / "p.py"), str(d / "p.py"),
                               str(disk)], capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert (out / "part-00000").read_text() == "ccc\t3|hello\ndddd\t3|hello\n"


def test_streaming_tasks_see_params_and_cmdenv(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "a.txt").write_text("a\n")
    out = tmp_path / "out"
    proc = subprocess.run([*GERYON, "mapreduce", "-q", "--local", "-R", "1", "--out", str(out), "--name", "s",
                           "-D", "my.param=7", "--cmdenv", "MYVAR=v",
                           '{ cat >/dev/null; printf "%s\\t%s\\n" "$my_param$MYVAR" "$GERYON_PARAMS" }', "cat",
                           str(disk)], capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (out / "part-00000").read_text() == '7v\t{"my.param": "7"}\n'


@pytest.mark.parametrize("arg", ["-D", "--cmdenv"])
def test_a_bad_assignment_is_one_line(tmp_path, arg):
    d = tmp_path / "job"
    d.mkdir()
    (d / "p.py").write_text(PARAM_JOB)
    proc = subprocess.run([*GERYON, "mapreduce", "--local", arg, "novalue", str(d / "p.py"), str(d / "p.py"),
                           str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"geryon: {arg} wants NAME=VALUE, not 'novalue'"


def test_python_api_params(tmp_path):
    d = tmp_path / "job"
    d.mkdir()
    (d / "p.py").write_text(PARAM_JOB)
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "a.txt").write_text("a bb ccc\n")
    job = Job(map=step_from_arg(str(d / "p.py"), "map"), reduce=step_from_arg(str(d / "p.py"), "reduce"),
              params={"minlen": 2}, cmdenv={"MYVAR": "api"}, partitions=1)
    result = job.run([str(disk)], out=str(tmp_path / "out"), workers=2)
    assert sorted(result) == [("bb", "unset|api"), ("ccc", "unset|api")]
