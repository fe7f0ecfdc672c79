"""The generic (non-sum) path's bulk steps give exactly what their per-key forms give: a segment's
list records written in bulk (`SegmentWriter.add_lists`) read back as `add_list` per key writes
them, in blocks within the same limits; the in-memory reduce's groups (boundaries found in C) are
the groups of a plain comparison loop, values in input order."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geryon.mapreduce import segments
from geryon.mapreduce.codec import block_stream
from geryon.mapreduce.segments import SegmentWriter, iter_records

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)

_values = st.one_of(st.text(max_size=12), st.integers(-2**60, 2**60), st.binary(max_size=8), st.text(min_size=200, max_size=400))
# lists of every length the writer treats apart: empty (dropped), short, longer than SHORT_LIST
_lists = st.one_of(st.lists(_values, min_size=1, max_size=4), st.lists(_values, max_size=0),
                   st.lists(st.integers(0, 9), min_size=60, max_size=150))
_keys = st.one_of(st.text(min_size=1, max_size=6), st.text(min_size=300, max_size=600))


def _written(records: list[tuple], bulk: bool) -> tuple[list, list]:
    f = io.BytesIO()
    w = SegmentWriter(f)
    keys, lists = [k for k, _ in records], [v for _, v in records]
    if bulk:
        w.add_lists(keys, lists)
    else:
        for k, v in records:
            w.add_list(k, v)
    seg = w.finish("1")
    data = f.getvalue()[seg.offset:seg.offset + seg.length]
    blocks = list(block_stream([data]))
    assert seg.records == sum(len(ks) for _, ks, _ in blocks)
    return list(iter_records([data])), blocks


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Block limits a few records wide, so that every cut is exercised."""
    monkeypatch.setattr(segments, "BLOCK_RECORDS", 7)
    monkeypatch.setattr(segments, "BLOCK_VALUES", 90)
    monkeypatch.setattr(segments, "BLOCK_BYTES", 4096)


@SETTINGS
@given(st.dictionaries(_keys, _lists, max_size=60))
def test_lists_written_in_bulk_read_back_as_written_one_key_at_a_time(store: dict) -> None:
    records = sorted(store.items())
    assert _written(records, bulk=True)[0] == _written(records, bulk=False)[0]


@settings(SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])   # limits set once, kept
@given(st.dictionaries(_keys, _lists, max_size=60))
def test_bulk_lists_are_cut_at_the_block_limits(small_blocks: None, store: dict) -> None:
    records = sorted(store.items())
    got, blocks = _written(records, bulk=True)
    assert got == _written(records, bulk=False)[0]
    for single, keys, values in blocks:
        assert not single
        assert 1 <= len(keys) <= segments.BLOCK_RECORDS
        # a block passes a limit by its last record at most, as add_list's do
        assert sum(map(len, values[:-1])) < segments.BLOCK_VALUES
        assert sum(len(str(k)) for k in keys[:-1]) < 2 * segments.BLOCK_BYTES


def test_a_run_of_short_lists_fills_blocks_to_the_record_limit_or_the_byte_limit(monkeypatch) -> None:
    monkeypatch.setattr(segments, "BLOCK_BYTES", 1 << 30)   # records the only limit
    f = io.BytesIO()
    w = SegmentWriter(f)
    n = 3 * segments.BLOCK_RECORDS + 5
    w.add_lists([f"k{i:06d}" for i in range(n)], [[i, i] for i in range(n)])
    seg = w.finish("1")
    sizes = [len(ks) for _, ks, _ in block_stream([f.getvalue()])]
    assert sizes == [segments.BLOCK_RECORDS] * 3 + [5]
    assert seg.records == n
    monkeypatch.setattr(segments, "BLOCK_BYTES", 1 << 16)   # 64 KiB: about 500 records of 128 bytes
    f = io.BytesIO()
    w = SegmentWriter(f)
    w.add_lists([f"k{i:06d}" for i in range(n)], [[1000 + i, 1000 + i] for i in range(n)])
    w.finish("1")
    sizes = [len(ks) for _, ks, _ in block_stream([f.getvalue()])]
    assert sum(sizes) == n and max(sizes) <= (1 << 16) // 128 + 1 and min(sizes[:-1]) >= (1 << 16) // 128 // 2


def test_a_hot_key_among_short_lists_is_cut_as_add_list_cuts_it() -> None:
    hot = list(range(3 * segments.BLOCK_VALUES + 1))
    records = [("a", [1]), ("b", hot), ("c", [2, 3])]
    got, blocks = _written(records, bulk=True)
    assert got == _written(records, bulk=False)[0]
    assert max(sum(map(len, vs)) for _, _, vs in blocks) <= segments.BLOCK_VALUES + 1
    assert [v for k, vs in got if k == "b" for v in vs] == hot


def _groups_in_memory(tmp_path: Path, runs: list[list[tuple]]) -> list[tuple]:
    """The groups of a reduce over map outputs `runs` (each sorted (key, values) records)."""
    from geryon.mapreduce import reducetask
    from geryon.mapreduce.job import Job
    from geryon.mapreduce.task import ReduceTask

    inputs = []
    for i, records in enumerate(runs):
        path = tmp_path / f"m{i}.out"
        with open(path, "wb") as f:
            w = SegmentWriter(f)
            w.add_lists([k for k, _ in records], [v for _, v in records])
            inputs.append((str(path), w.finish("mixed" if any(type(k) is not str for k, _ in records) else "1")))
    task = ReduceTask(index=0, attempt=0, inputs=tuple(inputs), out_root=str(tmp_path), staging="s")
    state = reducetask._Reducing(Job(map=lambda k, v: [], reduce=lambda k, vs: None), task, reducetask.local_fetch)
    assert state.in_memory()
    return [(k, list(vs)) for k, vs in state.groups_in_memory()]


def _reference_groups(runs: list[list[tuple]]) -> list[tuple]:
    from geryon.mapreduce.order import total_key

    flat = [(k, v) for records in runs for k, vs in records for v in vs]
    flat.sort(key=lambda kv: total_key(kv[0]))   # stable: values of a key in input order
    out: list[tuple] = []
    for k, v in flat:
        if out and out[-1][0] == k:
            out[-1][1].append(v)
        else:
            out.append((k, [v]))
    return out


_run = st.dictionaries(st.one_of(st.text(max_size=3), st.integers(-3, 3)), st.lists(st.integers(0, 99), min_size=1,
                                                                                     max_size=3), max_size=12)


@SETTINGS
@given(st.lists(_run, min_size=1, max_size=4))
def test_in_memory_groups_are_the_groups_of_one_stable_sort(tmp_path_factory, runs: list[dict]) -> None:
    from geryon.mapreduce.order import total_key

    sorted_runs = [sorted(r.items(), key=lambda kv: total_key(kv[0])) for r in runs]
    tmp = tmp_path_factory.mktemp("g")
    assert _groups_in_memory(tmp, sorted_runs) == _reference_groups(sorted_runs)
