"""A local driver's scratch directories (geryon/mapreduce/scratch.py): a later run sweeps those whose
driver died (even by kill -9, even with a worker it forked still running) and nothing else."""
from __future__ import annotations

import os
import pathlib
import signal

from geryon.mapreduce.scratch import LOCK_NAME, Scratch, sweep


def _in_child(body) -> int:
    """Run `body` in a forked child that then stays alive (blocked) until killed; its pid once `body` ran."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            body()
            os.write(w, b"ok")
            signal.pause()
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 2) == b"ok"
    os.close(r)
    return pid


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_only_scratch_directories_of_dead_drivers_are_swept(tmp_path: pathlib.Path) -> None:
    mine = Scratch("geryon-live-", str(tmp_path))
    other = tmp_path / "geryon-not-ours"          # no lock file: another program's, or being made
    other.mkdir()
    (tmp_path / "geryon-file").write_text("x")
    (tmp_path / "unrelated").mkdir()
    made: list[str] = []
    dead = _in_child(lambda: made.append(Scratch("geryon-dead-", str(tmp_path)).path))
    (dead_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("geryon-dead-")]
    assert (dead_dir / LOCK_NAME).is_file()
    assert sweep(str(tmp_path)) == []             # its driver still lives
    _kill(dead)
    assert sweep(str(tmp_path)) == [str(dead_dir)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([os.path.basename(mine.path), "geryon-not-ours",
                                                                 "geryon-file", "unrelated"])
    mine.close()
    mine.close()                                   # idempotent
    assert not os.path.exists(mine.path)


def test_a_worker_outliving_its_driver_does_not_keep_the_scratch(tmp_path: pathlib.Path) -> None:
    workers: list[int] = []

    def driver() -> None:
        Scratch("geryon-job-", str(tmp_path))
        workers.append(_in_child(lambda: None))    # a forked worker, left running
        with open(tmp_path / "worker.pid", "w") as f:
            f.write(str(workers[0]))

    pid = _in_child(driver)
    worker = int((tmp_path / "worker.pid").read_text())
    try:
        _kill(pid)
        os.kill(worker, 0)                         # still alive
        swept = sweep(str(tmp_path))
        assert len(swept) == 1 and os.path.basename(swept[0]).startswith("geryon-job-")
    finally:
        os.kill(worker, signal.SIGKILL)
