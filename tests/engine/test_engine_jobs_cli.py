"""`geryon jobs` and `geryon logs`: reading the job history from the command line."""
from __future__ import annotations

import json
import pathlib
import subprocess
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

from geryon.cli import main
from geryon.cli.jobs import jobs_dir
from geryon.mapreduce.jobstore import JobStore

T0 = 1_700_000_000.0


@pytest.fixture(autouse=True)
def _no_jobs_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GERYON_JOBS_DIR", raising=False)


@pytest.fixture
def store(tmp_path: pathlib.Path) -> JobStore:
    """Two finished jobs: wordcount (succeeded after a lost map) and index (failed in r1)."""
    clock = iter(T0 + i for i in range(100000)).__next__
    jobs = JobStore(str(tmp_path / "jobs"), clock=clock)
    with jobs.begin("wordcount-20231114-221320-a1b2c3", {
            "name": "wordcount", "mode": "local", "argv": ["geryon", "mapreduce", "map.py", "reduce.py", "d0.mbox"],
            "map": "map.py", "reduce": "reduce.py", "disks": ["d0.mbox", "d1.mbox"], "partitions": 2,
            "cpus": ["local:0", "local:1"], "maps": 4}) as rec:
        for m in range(4):
            rec.attempt_started(f"m{m}", 0, f"local:{m % 2}", input=f"d{m % 2}.mbox/part{m}")
        rec.stderr("m3", 0, b"reading d1.mbox\nhalf way\n")
        rec.attempt_ended("m3", 0, "lost", error="cpu local:1 died")
        rec.event("m3: cpu local:1 died; retrying on local:0")
        rec.attempt_started("m3", 1, "local:0")
        rec.stderr("m3", 1, b"reading d1.mbox again\n")
        for m in range(4):
            rec.attempt_ended(f"m{m}", 1 if m == 3 else 0, "done", records_in=10 * m)
        for r in range(2):
            rec.attempt_started(f"r{r}", 0, "local:0")
            rec.stderr(f"r{r}", 0, f"reduce {r}\n".encode())
            rec.attempt_ended(f"r{r}", 0, "done")
        rec.finish("succeeded", {"counters": {"wordcount": {"words": 42}}, "seconds": 30,
                                 "parts": ["out/wordcount.part0", "out/wordcount.part1"]})
    with jobs.begin("index-20231114-221500-d4e5f6", {"name": "index", "mode": "cluster", "partitions": 2,
                                                     "argv": ["geryon", "mapreduce", "i.py", "r.py", "d0"]}) as rec:
        rec.attempt_started("m0", 0, "node1:0")
        rec.attempt_ended("m0", 0, "done")
        rec.attempt_started("r1", 0, "node2:0")
        rec.attempt_ended("r1", 0, "failed", error="ZeroDivisionError: division by zero\n  in reduce('b')")
        rec.finish("failed", {"error": "reduce task r1 failed on node2:0"})
    return jobs


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_jobs_lists_newest_first(store: JobStore) -> None:
    res = run("jobs", "--jobs-dir", store.root)
    assert res.exit_code == 0, res.stderr
    header, *rows = res.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "MODE", "STATE", "STARTED", "DURATION", "TASKS", "ATTEMPTS", "FAILED"]
    assert [r.split()[0] for r in rows] == ["index-20231114-221500-d4e5f6", "wordcount-20231114-221320-a1b2c3"]
    index, wordcount = (r.split() for r in rows)
    assert index[1:4] == ["index", "cluster", "failed"] and index[-3:] == ["1/3", "2", "1"]
    assert wordcount[1:4] == ["wordcount", "local", "succeeded"] and wordcount[-3:] == ["6/6", "7", "1"]
    assert wordcount[4].count("-") == 2 and wordcount[5].count(":") == 2  # local date and time
    assert wordcount[6] == f"{store.read('word')['seconds']:.1f}s" == "16.0s"  # 16 ticks of the test clock
    newest = run("jobs", "-n", "1", "--jobs-dir", store.root)
    assert len(newest.stdout.splitlines()) == 2 and "index-" in newest.stdout


def test_jobs_on_a_terminal_is_a_rich_table(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import geryon.cli.jobs as jobs_cli

    monkeypatch.setattr(jobs_cli, "_tty", lambda: True)
    res = run("jobs", "--jobs-dir", store.root)
    header, *rows = res.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "MODE", "STATE", "STARTED", "DURATION", "TASKS", "ATTEMPTS", "FAILED"]
    assert [r.split() for r in rows] == [r.split() for r in run("jobs", "--jobs-dir", store.root).stdout.splitlines()[1:]]


def test_jobs_dir_from_the_environment(store: JobStore) -> None:
    res = run("jobs", "--json", env={"GERYON_JOBS_DIR": store.root})
    summaries = json.loads(res.stdout)
    assert [s["id"] for s in summaries] == ["index-20231114-221500-d4e5f6", "wordcount-20231114-221320-a1b2c3"]
    assert summaries[1]["tasks_done"] == 6 and summaries[1]["phases"]["map"] == {
        "total": 4, "done": 4, "running": 0, "failed": 0}


def test_jobs_prefix_shows_the_details(store: JobStore) -> None:
    res = run("jobs", "--jobs-dir", store.root, "word")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    assert "job         wordcount-20231114-221320-a1b2c3" in out
    assert "command     geryon mapreduce map.py reduce.py d0.mbox" in out
    assert "disks       d0.mbox d1.mbox" in out and "cpus        local:0 local:1" in out
    assert "cpus used   local:0 (5 attempts), local:1 (2 attempts)" in out
    assert "tasks       map 4/4 done, reduce 2/2 done" in out
    slowest = out.split("slowest tasks\n")[1].split("failed attempts")[0].splitlines()
    assert len(slowest) == 5 and slowest[0].split()[0] == "m0"  # m0 ran longest on the test clock
    assert "  m3.a0 lost on local:1: cpu local:1 died" in out
    assert "m3: cpu local:1 died; retrying on local:0" in out.split("events\n")[1]
    assert "wordcount/words 42" in out
    assert out.split("parts\n")[1].split() == ["out/wordcount.part0", "out/wordcount.part1"]


def test_a_failed_job_shows_its_errors(store: JobStore) -> None:
    out = run("jobs", "--jobs-dir", store.root, "index").stdout
    assert "state failed" in out and "error       reduce task r1 failed on node2:0" in out
    assert "  r1.a0 failed on node2:0: ZeroDivisionError: division by zero\n        in reduce('b')" in out
    assert "tasks       map 1/1 done, reduce 0/2 done (1 failed)" in out


def test_jobs_json_of_one_job(store: JobStore) -> None:
    record = json.loads(run("jobs", "--json", "--jobs-dir", store.root, "index-2023").stdout)
    assert record["id"] == "index-20231114-221500-d4e5f6" and record["state"] == "failed"
    assert [(a["task"], a["state"]) for a in record["attempts"]] == [("m0", "done"), ("r1", "failed")]
    assert record["events"] == []


def test_logs_of_a_task_and_of_a_job(store: JobStore) -> None:
    res = run("logs", "--jobs-dir", store.root, "wordcount", "m3")
    assert res.exit_code == 0, res.stderr
    assert res.stdout == "m3.a0: reading d1.mbox\nm3.a0: half way\nm3.a1: reading d1.mbox again\n"
    every = run("logs", "wordcount", "--jobs-dir", store.root).stdout.splitlines()
    assert every == ["m3.a0: reading d1.mbox", "m3.a0: half way", "m3.a1: reading d1.mbox again",
                     "r0.a0: reduce 0", "r1.a0: reduce 1"]
    quiet = run("logs", "--jobs-dir", store.root, "wordcount", "m0")  # ran, wrote nothing
    assert (quiet.exit_code, quiet.stdout) == (0, "")


@pytest.mark.parametrize("args, message", [
    (["jobs", "nosuch"], "geryon: no job matching 'nosuch'\n"),
    (["logs", "nosuch"], "geryon: no job matching 'nosuch'\n"),
    (["logs", "wordcount", "m9"], "geryon: job wordcount-20231114-221320-a1b2c3 has no task 'm9'\n"),
    (["jobs", "--json", ""], "geryon: no job matching ''\n"),
])
def test_unknown_job_or_task_is_one_line_and_exit_1(store: JobStore, args: list[str], message: str) -> None:
    res = run(*args, "--jobs-dir", store.root)
    assert (res.exit_code, res.stderr, res.stdout) == (1, message, "")


def test_an_ambiguous_prefix_names_the_candidates(store: JobStore) -> None:
    res = run("jobs", "--jobs-dir", store.root, "")
    assert res.exit_code == 1
    res = run("logs", "--jobs-dir", store.root, "i")
    assert res.exit_code == 0  # one job starts with "i"
    JobStore(store.root).begin("index-other", {"name": "index"}).close()
    res = run("jobs", "--jobs-dir", store.root, "index")
    assert (res.exit_code, res.stderr) == (
        1, "geryon: 'index' is ambiguous: index-20231114-221500-d4e5f6, index-other\n")


def test_an_empty_or_damaged_store(tmp_path: pathlib.Path, store: JobStore) -> None:
    empty = run("jobs", "--jobs-dir", str(tmp_path / "none"))
    assert (empty.exit_code, empty.stdout) == (0, "") and "no jobs in" in empty.stderr
    assert run("jobs", "--json", "--jobs-dir", str(tmp_path / "none")).stdout.strip() == "[]"
    damaged = pathlib.Path(store.root) / "index-20231114-221500-d4e5f6"
    (damaged / "job.json").write_text("{")
    (damaged / "summary.json").unlink()
    res = run("jobs", "--jobs-dir", store.root)
    assert res.exit_code == 0 and "wordcount-" in res.stdout and "index-" not in res.stdout


def test_jobs_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert jobs_dir(None) == str(tmp_path / "home" / ".local" / "share" / "geryon" / "jobs")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/is/ignored")
    assert jobs_dir(None) == str(tmp_path / "home" / ".local" / "share" / "geryon" / "jobs")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert jobs_dir(None) == str(tmp_path / "data" / "geryon" / "jobs")
    monkeypatch.setenv("GERYON_JOBS_DIR", str(tmp_path / "mine"))
    assert jobs_dir(None) == str(tmp_path / "mine")
    assert jobs_dir("given") == "given"


def test_as_a_real_process(store: JobStore, geryon_proc: Callable[..., subprocess.CompletedProcess]) -> None:
    proc = geryon_proc("logs", "index", "r1", env={"GERYON_JOBS_DIR": store.root})
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")  # r1 ran but wrote no stderr
    proc = geryon_proc("jobs", "word", env={"GERYON_JOBS_DIR": store.root})
    assert proc.returncode == 0 and "state succeeded" in proc.stdout
    proc = geryon_proc("logs", "nosuch", env={"GERYON_JOBS_DIR": store.root})
    assert (proc.returncode, proc.stderr) == (1, "geryon: no job matching 'nosuch'\n")
    (pathlib.Path(store.root) / "index-20231114-221500-d4e5f6" / "summary.json").write_text("[")
    (pathlib.Path(store.root) / "index-20231114-221500-d4e5f6" / "job.json").write_text("")
    proc = geryon_proc("jobs", env={"GERYON_JOBS_DIR": store.root})
    assert proc.returncode == 0 and "wordcount-" in proc.stdout and "index-" not in proc.stdout
    warning, = proc.stderr.splitlines()  # the damaged job is named, once
    assert "WARNING" in warning and "skipping" in warning and "index-20231114-221500-d4e5f6" in warning
