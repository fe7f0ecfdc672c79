"""A reduce over many map outputs reads at most budget / MERGE_STREAM_BYTES of them at once:
more are merged in passes first (`segments.narrow`), with the output of one merge of all.

The map outputs are made by real sort buffers; the reduce is `run_reduce_task` with a fetch
that reads the local files and counts how many are open at once.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest

from geryon.mapreduce import order
from geryon.mapreduce.aggregate import sum_blocks
from geryon.mapreduce.job import Job
from geryon.mapreduce.partition import crc32_partition
from geryon.mapreduce.reducetask import FetchFailed, local_fetch, run_reduce_task
from geryon.mapreduce.segments import MERGE_STREAM_BYTES, file_chunks, iter_records, merge_fan_in, narrow
from geryon.mapreduce.sortbuffer import SortBuffer
from geryon.mapreduce.task import ReduceTask

MAPS = 41
"""Map outputs: more than the 2 a 1 MiB budget may read at once, and not a power of 2."""


def map_nothing(key, value):  # the job's map (never run here)
    return None


def reduce_join(key, values):  # order-sensitive: the values of a key in map order
    return "|".join(values)


def _map_outputs(tmp_path: Path, maps: int = MAPS, seed: int = 17) -> list[tuple[str, object]]:
    """`maps` map output files of one partition: overlapping str keys (and a hot key in every
    one), values naming their map and place."""
    rng = random.Random(seed)
    outs = []
    for m in range(maps):
        d = tmp_path / f"map{m}"
        d.mkdir()
        buf = SortBuffer(1, crc32_partition, None, False, 1 << 30, str(d))
        pairs = [(f"k{rng.randrange(3000):05d}", f"m{m}v{j}") for j in range(1500)]
        pairs += [("hot", f"m{m}h{j}") for j in range(300)]
        buf.add(pairs)
        path = str(tmp_path / f"map{m}.out")
        outs.append((path, buf.finish(path)[0]))
    return outs


class _Counting:
    """A fetch reading local map outputs, counting the streams open at once."""

    def __init__(self) -> None:
        self.open = 0
        self.most = 0
        self.opened = 0

    def __call__(self, location, seg):
        self.opened += 1
        self.open += 1
        self.most = max(self.most, self.open)
        try:
            yield from local_fetch(location, seg)
        finally:
            self.open -= 1


def _reduce(tmp_path: Path, name: str, outs, budget: int, fetch=local_fetch):
    job = Job(map=map_nothing, reduce=reduce_join, partitions=1, sort_budget=budget, format="text", name="join")
    (tmp_path / name).mkdir()
    task = ReduceTask(0, 0, tuple(outs), str(tmp_path / name), "stage")
    return run_reduce_task(job, task, fetch), tmp_path / name


def test_many_map_outputs_at_a_small_budget_give_the_output_of_one_merge(tmp_path: Path) -> None:
    outs = _map_outputs(tmp_path)
    counting = _Counting()
    small, small_root = _reduce(tmp_path, "small", outs, 1 << 20, counting)
    assert small.ok, small.error
    assert merge_fan_in(1 << 20) == 2
    assert counting.opened == MAPS and counting.most <= 2, (counting.opened, counting.most)
    assert small.counters["geryon"]["reduce_merges"] >= MAPS - 2
    whole, whole_root = _reduce(tmp_path, "whole", outs, 1 << 30)  # fits: merged in memory, at once
    assert whole.ok, whole.error
    assert "geryon" not in whole.counters
    got = (small_root / small.output).read_bytes()
    assert got == (whole_root / whole.output).read_bytes()
    hot = [line for line in got.decode().splitlines() if line.startswith("hot\t")]
    assert hot == ["hot\t" + "|".join(f"m{m}h{j}" for m in range(MAPS) for j in range(300))]
    assert sorted(p.name for p in (small_root / "stage").iterdir()) == [Path(small.output).name]  # no merge files left


@pytest.mark.parametrize("fan", [2, 3, 7, 40, 41])
def test_narrow_keeps_the_records_and_their_order(tmp_path: Path, fan: int) -> None:
    outs = _map_outputs(tmp_path, 41, seed=fan)

    def sources():
        return [(lambda p=p, s=s: file_chunks(p, s.offset, s.length), s.kind) for p, s in outs]

    want = list(order.merge([iter_records(open_()) for open_, _ in sources()], mixed=False))
    spill = tmp_path / "spill"
    spill.mkdir()
    left, merges = narrow(sources(), fan, str(spill))
    assert len(left) <= fan and (fan < 41 or len(left) == 41)
    assert merges == 0 if fan >= 41 else merges > 0
    assert len(list(spill.iterdir())) <= fan  # the files of finished passes are gone
    got = list(order.merge([iter_records(open_()) for open_, _ in left], mixed=False))
    flat = lambda records: [(k, v) for k, vs in records for v in vs]  # noqa: E731
    assert flat(got) == flat(want)


def test_a_map_output_lost_during_a_merge_pass_names_it_and_leaves_no_files(tmp_path: Path) -> None:
    outs = _map_outputs(tmp_path, 9)
    lost = outs[5][0]

    def fetch(location, seg):
        if location == lost:
            raise FetchFailed(location, "node unreachable")
        return local_fetch(location, seg)

    result, root = _reduce(tmp_path, "out", outs, 1 << 20, fetch)
    assert not result.ok and result.lost_input == lost, result.error
    assert list((root / "stage").iterdir()) == []


def test_the_fan_in_is_the_budget_over_the_stream_cost() -> None:
    assert merge_fan_in(64 << 20) == (64 << 20) // MERGE_STREAM_BYTES == 8
    assert merge_fan_in(1 << 20) == 2


def _open_files(prefix: str) -> int:
    fds = Path("/proc/self/fd")
    n = 0
    for fd in fds.iterdir():
        try:
            n += os.readlink(fd).startswith(prefix)
        except OSError:
            pass
    return n


def test_a_sum_reduce_merges_its_spilled_runs_a_few_at_a_time() -> None:
    # 60,000 distinct keys at a 1 MiB budget spill some 20 sorted runs of sums; their merge
    # used to open them all at once.
    rng = random.Random(5)
    keys = [f"w{i:06d}" for i in range(60_000)]
    blocks = []
    want: dict = {}
    for b in range(12):
        ks = rng.sample(keys, 20_000)
        vs = [rng.randrange(1, 9) for _ in ks]
        for k, v in zip(ks, vs):
            want[k] = want.get(k, 0) + v
        blocks.append((True, ks, vs))
    tmp = tempfile.gettempdir()
    got_k: list = []
    got_v: list = []
    most = 0
    for ks, vs in sum_blocks(iter(blocks), 1 << 20, mixed=False):
        most = max(most, _open_files(os.path.join(tmp, "geryon-agg-")))
        got_k += ks
        got_v += vs
    assert got_k == sorted(want) and got_v == [want[k] for k in got_k]
    assert 0 < most <= merge_fan_in(1 << 20), most
