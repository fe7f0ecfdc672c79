"""The job history store: records round-trip, throttled writes, lookups, pruning, log caps, threads."""
from __future__ import annotations

import json
import logging
import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest

from geryon.errors import GeryonError
from geryon.mapreduce.jobstore import JobStore, driver_alive, phase_counts, summarize, task_order

INFO = {"name": "wc", "mode": "local", "argv": ["geryon", "mapreduce", "map.py", "reduce.py", "d0"],
        "map": "map.py", "reduce": "reduce.py", "disks": ["d0"], "partitions": 2, "cpus": ["local:0", "local:1"]}


@pytest.fixture(autouse=True)
def _threads_joined(no_thread_leaks: None) -> None:
    """Every record's writer thread is stopped by close()."""


def on_disk(store: JobStore, job_id: str) -> dict:
    return json.loads((pathlib.Path(store.root) / job_id / "job.json").read_text())


def test_begin_attempts_finish_round_trip(tmp_path: pathlib.Path) -> None:
    store = JobStore(str(tmp_path / "jobs"))
    with store.begin("wc-1", dict(INFO, started=1000.0)) as rec:
        assert rec.job_id == "wc-1" and rec.dir == str(tmp_path / "jobs" / "wc-1")
        assert store.read("wc-1")["state"] == "running"  # written at once by begin
        rec.attempt_started("m0", 0, "local:0", input="d0/a..c")
        rec.attempt_started("m1", 0, "local:1", input="d0/d..f")
        rec.attempt_ended("m1", 0, "lost", error="cpu local:1 died")
        rec.attempt_started("m1", 1, "local:0", input="d0/d..f")
        rec.attempt_ended("m0", 0, "done", records_in=3, records_out=7, bytes_in=30, bytes_out=70, output="m0.a0.out")
        rec.attempt_ended("m1", 1, "done", records_in=2, records_out=5)
        for r in range(2):
            rec.attempt_started(f"r{r}", 0, "local:1")
            rec.attempt_ended(f"r{r}", 0, "done", records_in=6, records_out=3, output=f"wc.part{r}")
        rec.event("map m1 re-run\nafter its cpu died")
        rec.finish("succeeded", {"counters": {"geryon": {"records": 5}}, "parts": ["out/wc.part0", "out/wc.part1"],
                                 "seconds": 1.5})
    record = store.read("wc-1")
    assert record["state"] == "succeeded"
    assert record["name"] == "wc" and record["argv"] == INFO["argv"] and record["disks"] == ["d0"]
    assert record["started"] == 1000.0 and record["pid"] == os.getpid()
    assert record["ended"] >= record["begun"] and record["seconds"] == pytest.approx(record["ended"] - 1000.0)
    assert record["summary"]["parts"] == ["out/wc.part0", "out/wc.part1"]
    assert [(a["task"], a["attempt"], a["state"]) for a in record["attempts"]] == [
        ("m0", 0, "done"), ("m1", 0, "lost"), ("m1", 1, "done"), ("r0", 0, "done"), ("r1", 0, "done")]
    m0 = record["attempts"][0]
    assert (m0["cpu"], m0["input"], m0["records_in"], m0["records_out"], m0["bytes_in"], m0["bytes_out"],
            m0["output"]) == ("local:0", "d0/a..c", 3, 7, 30, 70, "m0.a0.out")
    assert m0["ended"] >= m0["started"] and m0["seconds"] == pytest.approx(m0["ended"] - m0["started"])
    assert record["attempts"][1]["error"] == "cpu local:1 died"
    assert [e["text"] for e in record["events"]] == ["map m1 re-run\nafter its cpu died"]
    summary, = store.list()
    assert (summary["id"], summary["state"], summary["tasks_done"], summary["tasks_total"], summary["attempts"],
            summary["failed_attempts"]) == ("wc-1", "succeeded", 4, 4, 5, 1)


def test_writes_are_throttled_but_flushed_on_finish(tmp_path: pathlib.Path) -> None:
    store = JobStore(str(tmp_path), flush_every=3600)
    rec = store.begin("slow", INFO)
    rec.attempt_started("m0", 0, "local:0")
    rec.attempt_ended("m0", 0, "done")
    time.sleep(0.1)     # time for the writer to write too early, if it would: the behaviour under test
    assert on_disk(store, "slow")["attempts"] == []  # not rewritten yet: the interval has not passed
    rec.finish("failed", {"error": "reduce r1 failed"})
    assert [a["task"] for a in on_disk(store, "slow")["attempts"]] == ["m0"]
    rec.attempt_started("r0", 0, "local:0")  # a late report still reaches the disk on close
    rec.close()
    assert [a["task"] for a in on_disk(store, "slow")["attempts"]] == ["m0", "r0"]
    assert on_disk(store, "slow")["attempts"][1]["state"] == "running"


def test_a_quiet_record_reaches_the_disk_within_the_interval(tmp_path: pathlib.Path) -> None:
    store = JobStore(str(tmp_path), flush_every=0.05)
    with store.begin("quiet", INFO) as rec:
        rec.attempt_started("r0", 0, "local:0")
        deadline = time.monotonic() + 5
        while not on_disk(store, "quiet")["attempts"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert on_disk(store, "quiet")["attempts"][0]["state"] == "running"
        assert on_disk(store, "quiet")["state"] == "running"


def test_many_updates_cost_few_rewrites(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import geryon.mapreduce.jobstore as jobstore

    writes = []
    real = jobstore._write_atomic
    monkeypatch.setattr(jobstore, "_write_atomic", lambda path, data: (writes.append(path), real(path, data)))
    store = JobStore(str(tmp_path), flush_every=10)
    with store.begin("many", INFO) as rec:
        for i in range(2000):
            rec.attempt_started(f"m{i}", 0, "local:0")
            rec.attempt_ended(f"m{i}", 0, "done")
        rec.finish("succeeded", {})
    records = [p for p in writes if p.endswith("job.json")]
    assert len(records) <= 3  # begin, finish (and close finds nothing new)
    assert len(on_disk(store, "many")["attempts"]) == 2000


def test_close_without_finish_fails_the_job_and_kills_running_attempts(tmp_path: pathlib.Path) -> None:
    store = JobStore(str(tmp_path))
    rec = store.begin("crashy", INFO)
    rec.attempt_started("m0", 0, "local:0")
    rec.close()
    rec.close()  # idempotent
    record = store.read("crashy")
    assert record["state"] == "failed" and "without finishing" in record["summary"]["error"]
    assert record["attempts"][0]["state"] == "killed"


def test_bad_states_and_names_are_refused(tmp_path: pathlib.Path) -> None:
    store = JobStore(str(tmp_path))
    with pytest.raises(GeryonError, match="bad job id"):
        store.begin("../escape", INFO)
    with store.begin("ok", INFO) as rec:
        with pytest.raises(ValueError, match="bad attempt state 'finished'"):
            rec.attempt_ended("m0", 0, "finished")
        with pytest.raises(ValueError, match="bad task name"):
            rec.stderr("../m0", 0, b"x")
        with pytest.raises(ValueError, match="bad job state 'ok'"):
            rec.finish("ok", {})
        rec.finish("killed", {})
    with pytest.raises(GeryonError, match="job 'ok' already exists"):
        store.begin("ok", INFO)


def test_prefix_lookup_and_ambiguity(tmp_path: pathlib.Path) -> None:
    store = JobStore(str(tmp_path))
    for job_id in ("wc-20240501-aaa", "wc-20240501-abb", "index-1", "index-10"):
        store.begin(job_id, INFO).close()
    assert store.read("wc-20240501-aa")["id"] == "wc-20240501-aaa"
    assert store.read("index-1")["id"] == "index-1"  # an exact id wins over a longer match
    with pytest.raises(GeryonError) as err:
        store.read("wc-")
    assert str(err.value) == "'wc-' is ambiguous: wc-20240501-aaa, wc-20240501-abb"
    with pytest.raises(GeryonError) as err:
        store.read("grep")
    assert str(err.value) == "no job matching 'grep'"
    with pytest.raises(GeryonError, match="no job matching"):
        JobStore(str(tmp_path / "missing")).read("wc")
    assert JobStore(str(tmp_path / "missing")).list() == []


def test_list_is_newest_first_and_skips_damaged_jobs(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = iter(float(t) for t in range(100, 10000)).__next__
    store = JobStore(str(tmp_path), clock=clock)
    for job_id in ("old", "mid", "new"):
        store.begin(job_id, INFO).close()
    (tmp_path / "mid" / "job.json").write_text('{"id": "mid", "attem')  # half-written
    (tmp_path / "mid" / "summary.json").write_text("")
    (tmp_path / "empty").mkdir()  # a directory without a record
    (tmp_path / "notes.txt").write_text("not a job")
    with caplog.at_level(logging.WARNING, logger="geryon.mapreduce.jobstore"):
        assert [s["id"] for s in store.list()] == ["new", "old"]
    assert "mid" in caplog.text and "empty" in caplog.text
    with pytest.raises(GeryonError, match="job mid: damaged record"):
        store.read("mid")
    (tmp_path / "old" / "summary.json").unlink()  # the summary is rebuilt from job.json
    assert [s["id"] for s in store.list()] == ["new", "old"]


def test_begin_keeps_the_newest_jobs(tmp_path: pathlib.Path) -> None:
    clock = iter(float(t) for t in range(1000, 100000)).__next__
    store = JobStore(str(tmp_path), keep=100, clock=clock)
    for i in range(105):
        store.begin(f"job{i:03d}", INFO).close()
    (tmp_path / "mine").mkdir()  # not a job directory: never removed
    store.begin("last", INFO).close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 101 and "mine" in names and "last" in names
    assert [s["id"] for s in store.list()][:3] == ["last", "job104", "job103"]
    assert "job005" not in names and "job006" in names


def test_pruning_spares_a_job_whose_driver_runs(tmp_path: pathlib.Path) -> None:
    clock = iter(float(t) for t in range(1000, 100000)).__next__
    store = JobStore(str(tmp_path), keep=2, clock=clock)
    running = store.begin("running", INFO)
    store.begin("b", INFO).close()
    store.begin("c", INFO).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "c", "running"]  # past keep, but alive
    running.close()
    store.begin("d", INFO).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "d"]


def test_a_job_whose_driver_died_reads_as_lost(tmp_path: pathlib.Path) -> None:
    code = ("import sys, os\nfrom geryon.mapreduce.jobstore import JobStore\n"
            "rec = JobStore(sys.argv[1]).begin('orphan', {'name': 'x'})\n"
            "rec.attempt_started('m0', 0, 'local:0')\nos._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    store = JobStore(str(tmp_path))
    with store.begin("alive", INFO) as rec:
        states = {s["id"]: s["state"] for s in store.list()}
        assert states == {"orphan": "lost", "alive": "running"}
        assert store.read("orphan")["state"] == "lost"
        rec.finish("succeeded", {})
    assert on_disk(store, "orphan")["state"] == "running"  # reading never rewrites


def test_driver_alive() -> None:
    import socket

    me = socket.gethostname()
    assert driver_alive(me, os.getpid(), time.time()) is True
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert driver_alive(me, int(done.stdout), time.time()) is False
    assert driver_alive("elsewhere.example", os.getpid(), time.time()) is None
    # a pid whose process began long after the job did belongs to someone else now (Linux /proc)
    assert driver_alive(me, os.getpid(), 0.0) is (not os.path.exists("/proc/self/stat"))


def test_stderr_logs_in_task_order(tmp_path: pathlib.Path) -> None:
    store = JobStore(str(tmp_path))
    with store.begin("logs", INFO) as rec:
        for task, attempt in (("r0", 0), ("m10", 0), ("m2", 1), ("m2", 0)):
            rec.stderr(task, attempt, f"{task} attempt {attempt}\n".encode())
        rec.stderr("m2", 0, b"second line\n")
        rec.stderr("m2", 0, b"")
        rec.finish("succeeded", {})
    found = store.log_paths("lo")
    assert [(t, a) for t, a, _ in found] == [("m2", 0), ("m2", 1), ("m10", 0), ("r0", 0)]
    assert pathlib.Path(found[0][2]).read_bytes() == b"m2 attempt 0\nsecond line\n"
    assert [(t, a) for t, a, _ in store.log_paths("logs", "m2")] == [("m2", 0), ("m2", 1)]
    assert store.log_paths("logs", "m9") == []


def test_stderr_is_capped_keeping_head_and_tail(tmp_path: pathlib.Path) -> None:
    cap = 4096
    store = JobStore(str(tmp_path), log_cap=cap)
    lines = [f"line {i:05d} {'x' * 20}\n".encode() for i in range(2000)]
    with store.begin("noisy", INFO) as rec:
        for line in lines:
            rec.stderr("m0", 0, line)
        rec.stderr("m1", 0, b"".join(lines))  # one write past the cap
        rec.finish("failed", {})
    for task in ("m0", "m1"):
        (_, _, path), = store.log_paths("noisy", task)
        data = pathlib.Path(path).read_bytes()
        assert len(data) <= cap
        head, marker, tail = data.partition(b"\n[geryon: ")
        assert marker, "the cut is noted in the log"
        dropped_note, _, tail = tail.partition(b"\n")
        kept_head, kept_tail = head.split(b"\n")[:-1], tail.split(b"\n")[:-1]
        # whole lines from the start and from the end, and a count of what is between
        assert head == b"".join(lines[:len(kept_head)]) and tail == b"".join(lines[-len(kept_tail):])
        assert 0 < len(head) <= cap // 4 < len(tail)
        assert dropped_note.split(b" ", 1) == [str(sum(map(len, lines)) - len(head) - len(tail)).encode(),
                                               b"bytes of stderr dropped]"]


def test_many_threads_record_attempts(tmp_path: pathlib.Path) -> None:
    store = JobStore(str(tmp_path), flush_every=0.001)
    rec = store.begin("threads", INFO)

    def work(t: int) -> None:
        for i in range(200):
            task = f"m{t * 200 + i}"
            rec.attempt_started(task, 0, f"cpu{t}")
            rec.stderr(task, 0, b"working\n")
            rec.attempt_ended(task, 0, "done", records_in=i)
            if i % 50 == 0:
                rec.event(f"thread {t} at {i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rec.finish("succeeded", {})
    rec.close()
    record = store.read("threads")
    assert len(record["attempts"]) == 1600 and all(a["state"] == "done" for a in record["attempts"])
    assert [a["task"] for a in record["attempts"]] == sorted((a["task"] for a in record["attempts"]), key=task_order)
    assert len(record["events"]) == 32 and len(store.log_paths("threads")) == 1600
    assert store.list()[0]["tasks_done"] == 1600


def test_phase_counts_and_summary_totals() -> None:
    record = {"id": "j", "maps": 3, "partitions": 2, "state": "running", "attempts": [
        {"task": "m0", "attempt": 0, "state": "done"},
        {"task": "m1", "attempt": 0, "state": "failed"},
        {"task": "m1", "attempt": 1, "state": "running"},
        {"task": "m2", "attempt": 0, "state": "lost"},
        {"task": "r0", "attempt": 0, "state": "ignored"},
        {"task": "r0", "attempt": 1, "state": "done"},
    ]}
    assert phase_counts(record) == {"map": {"total": 3, "done": 1, "running": 1, "failed": 1},
                                    "reduce": {"total": 2, "done": 1, "running": 0, "failed": 0}}
    s = summarize(record)
    assert (s["tasks_done"], s["tasks_total"], s["attempts"], s["failed_attempts"]) == (2, 5, 6, 2)


def test_update_info_adds_the_map_count(tmp_path: pathlib.Path) -> None:
    store = JobStore(str(tmp_path))
    with store.begin("planned", INFO) as rec:
        rec.update_info({"maps": 7, "state": "ignored: the store owns it"})
        rec.finish("succeeded", {})
    assert store.list()[0]["tasks_total"] == 9 and store.read("planned")["state"] == "succeeded"
