"""What a task prints on a real Dask cluster reaches the driver's stderr while the task runs,
each line prefixed with its attempt (as in local and cluster mode), and the job's record keeps
it (`geryon logs JOB`); a task that prints more than is streamed live still ends with its last lines."""
from __future__ import annotations

import json
import os
import pathlib
import queue
import subprocess
import sys
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
JOBS = pathlib.Path(__file__).resolve().parent / "jobs"
BIN = pathlib.Path(sys.executable).parent
DEADLINE = 120.0
REDUCE = str(JOBS / "holdreduce.py")


def _job_id(geryon_cli, env) -> str:
    listed = geryon_cli("jobs", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    records = records if isinstance(records, list) else [records]
    return str(records[0]["id"])


def test_a_tasks_stderr_streams_while_it_runs_and_is_kept(dask_cluster, geryon_cli, text_disks, tmp_path,
                                                          read_parts) -> None:
    hold = tmp_path / "hold dir"
    hold.mkdir()
    held = sorted(p.name for p in text_disks[0].iterdir())[0]
    env = {"GERYON_JOBS_DIR": str(tmp_path / "job records")}
    local = tmp_path / "local out"
    done = geryon_cli("mapreduce", "-q", str(JOBS / "noisymap.py"), REDUCE, *map(str, text_disks), "--local",
                      "--out", str(local), env=env)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "dask out"
    job = subprocess.Popen([str(BIN / "geryon"), "mapreduce", str(JOBS / "noisymap.py"), REDUCE,
                            *map(str, text_disks), "--dask", dask_cluster.address, "--out", str(out),
                            "-D", f"hold_on={held}", "-D", f"dir={hold}"],
                           cwd=tmp_path, env={**os.environ, **env, "HOME": str(tmp_path)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    reader = threading.Thread(target=lambda: [lines.put(l) for l in job.stderr], daemon=True)
    reader.start()
    try:
        end = time.monotonic() + DEADLINE
        while not any(f": holding at {text_disks[0].name}/{held}" in l for l in seen):
            assert time.monotonic() < end and job.poll() is None, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        # The attempt still holds (nothing released it): its line came while it runs.
        holding = next(l for l in seen if f"holding at {text_disks[0].name}/" in l)
        assert holding.startswith("geryon: m") and ".a0: holding at" in holding, holding
        (hold / "release").write_text("")
        job.wait(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
        job.wait()
        reader.join(30)
        job.stderr.close()
    while not lines.empty():
        seen.append(lines.get())
    stderr = "".join(seen)
    assert job.returncode == 0, stderr
    assert read_parts(out) == read_parts(local)
    files = [f"{d.name}/{p.name}" for d in text_disks for p in d.iterdir()]
    for f in files:      # every map's lines, each once, prefixed with its attempt
        assert len([l for l in seen if l.rstrip("\n").endswith(f": counted {f}")]) == 1, (f, stderr)
    logs = geryon_cli("logs", _job_id(geryon_cli, env), env=env)
    assert logs.returncode == 0, logs.stderr
    assert holding.strip().removeprefix("geryon: ") in logs.stdout.splitlines(), logs.stdout
    for f in files:
        assert f"counted {f}" in logs.stdout


def test_a_task_printing_more_than_is_streamed_ends_with_its_last_lines(dask_cluster, geryon_cli, text_disks,
                                                                         tmp_path, read_parts) -> None:
    loud = sorted(p.name for p in text_disks[1].iterdir())[-1]
    env = {"GERYON_JOBS_DIR": str(tmp_path / "job records")}
    out = tmp_path / "dask out"
    n = 40000      # 3.2 MB of lines: past what is streamed live (1 MiB) and what a result carries (1 MiB)
    done = geryon_cli("mapreduce", str(JOBS / "noisymap.py"), REDUCE, *map(str, text_disks), "--dask",
                      dask_cluster.address, "--out", str(out), "-D", f"loud={text_disks[1].name}/{loud}", "-D", f"lines={n}",
                      env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [l for l in done.stderr.splitlines() if "loud line " in l]
    numbers = [int(l.split("loud line ")[1].split()[0]) for l in printed if len(l.split("loud line ")[1]) == 69]
    assert numbers[0] == 0 and numbers[-1] == n - 1, (numbers[:3], numbers[-3:])
    assert numbers == sorted(numbers)                                   # in order, none twice
    assert len(numbers) < n                                             # the middle was dropped ...
    assert "bytes dropped]" in done.stderr                              # ... and says so
    assert f"counted {text_disks[1].name}/{loud}" in done.stderr
