"""Map and reduce tasks run with the collector's young generation collected rarely
(`taskgc.TASK_THRESHOLD`), in worker processes and inline, and give the caller's thresholds back;
cyclic garbage made during a task is still reclaimed before it ends."""
from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from geryon.mapreduce.api import run_job
from geryon.mapreduce.job import Job
from geryon.mapreduce.taskgc import TASK_THRESHOLD, collecting_rarely


def _map_thresholds(key, value):
    yield "t", gc.get_threshold()[0]


def _reduce_thresholds(key, values):
    return [sorted(set(values)), gc.get_threshold()[0]]


@pytest.mark.parametrize("workers", [1, 2])
def test_map_and_reduce_tasks_collect_rarely(tmp_path: Path, workers: int) -> None:
    disk = tmp_path / "some input"
    disk.mkdir()
    for i in range(3):
        (disk / f"f {i}.txt").write_text(f"record {i}\n")
    before = gc.get_threshold()
    out = tmp_path / "out dir"
    run_job(Job(map=_map_thresholds, reduce=_reduce_thresholds, partitions=1, format="text"), [str(disk)],
            out=str(out), workers=workers)
    assert (out / "part-00000").read_text() == f"t\t[[{TASK_THRESHOLD[0]}], {TASK_THRESHOLD[0]}]\n"
    assert gc.get_threshold() == before


class _Node:
    pass


def test_cyclic_garbage_made_during_a_task_is_still_collected() -> None:
    @collecting_rarely
    def task() -> bool:
        first = _Node()
        first.me = first
        dead = weakref.ref(first)
        del first
        for _ in range(3 * TASK_THRESHOLD[0]):   # a cycle per record, never collected by hand
            n = _Node()
            n.me = n
        return dead() is None

    assert task()


def test_the_callers_thresholds_come_back_when_a_task_raises() -> None:
    before = gc.get_threshold()

    @collecting_rarely
    def task() -> None:
        assert gc.get_threshold() == TASK_THRESHOLD
        raise ValueError("the map failed")

    with pytest.raises(ValueError):
        task()
    assert gc.get_threshold() == before
