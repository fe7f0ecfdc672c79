"""The engine equals a sequential reference: group by key, sort by key, apply reduce.

Records are generated (hypothesis, and seeded random for the large cases); the input disk
holds one record index per line and the map looks the record up, so any Python key and
value can be fed to the engine. Workers are forked after RECORDS is set, so they see it.
"""
from __future__ import annotations

import collections
import json
import pathlib
import random
import tempfile

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import geryon
from geryon.mapreduce import reducetask, sortbuffer
from geryon.mapreduce.codec import freeze

RECORDS: list[tuple[object, object]] = []
"""The (key, value) pairs the map emits; index i is emitted for input line `i`."""


# -- map, combine and reduce functions ------------------------------------------------------

def map_yield(key, value):
    yield RECORDS[int(value)]


def map_list(key, value):
    return [RECORDS[int(value)]]


def reduce_sum(key, values):
    return sum(values)


def reduce_sum_generic(key, values):
    total = 0
    for v in values:
        total += v
    return total


def reduce_list(key, values):
    return list(values)


def reduce_pairs(key, values):
    vals = list(values)
    yield key, len(vals)
    yield key, vals[:3]


# -- the reference ------------------------------------------------------------------------

def _out_key(k):
    """A key as JSON output gives it back: exact (bytes stay bytes), lists as tuples."""
    if isinstance(k, (list, tuple)):
        return tuple(_out_key(x) for x in k)
    return k


def _out_value(v):
    if isinstance(v, (list, tuple)):
        return [_out_value(x) for x in v]
    return v


def reference(records, reduce_fn):
    """Sequential MapReduce: group by key (emission order kept), reduce each group."""
    groups: dict = collections.OrderedDict()
    for k, v in records:
        groups.setdefault(freeze(k), []).append(v)
    out = []
    for k, vals in groups.items():
        res = reduce_fn(k, iter(vals))
        if hasattr(res, "__next__"):
            out.extend((_out_key(k2), _out_value(v2)) for k2, v2 in res)
        else:
            out.append((_out_key(k), _out_value(res)))
    return out


def canonical(pairs):
    """A multiset of pairs, compared with exact types (tuple vs list, int vs str)."""
    return sorted(repr(p) for p in pairs)


def run_engine(tmp: pathlib.Path, records, *, map_fn=map_yield, reduce_fn=reduce_sum, combine=None,
               partitions=3, files=3, workers=1, sort_budget=None, split_size=None):
    RECORDS[:] = records
    disk = tmp / "in"
    disk.mkdir()
    n = len(records)
    bounds = [round(i * n / files) for i in range(files + 1)]
    for f in range(files):
        lines = "".join(f"{i}\n" for i in range(bounds[f], bounds[f + 1]))
        (disk / f"f{f:02d}.txt").write_text(lines)
    kw = {}
    if sort_budget:
        kw["sort_budget"] = sort_budget
    if split_size:
        kw["split_size"] = split_size
    job = geryon.Job(map=map_fn, reduce=reduce_fn, combine=combine, partitions=partitions, format="json",
                     reader="lines", name="ref", **kw)
    return job.run([str(disk)], out=str(tmp / "out"), workers=workers)


# -- strategies ---------------------------------------------------------------------------

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from("\t\n\r\\ é€𝄞"),
                max_size=8)
ints = st.integers(min_value=-(2 ** 62), max_value=2 ** 62)
scalar_keys = st.one_of(texts, ints, st.binary(max_size=6))
list_keys = st.lists(st.one_of(texts, ints), max_size=3)
all_keys = st.one_of(scalar_keys, list_keys)
values = st.integers(min_value=-1000, max_value=1000)

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _records(keys):
    return st.lists(st.tuples(keys, values), min_size=0, max_size=60)


def _check(records, reduce_fn, result):
    got = list(result)
    assert canonical(got) == canonical(reference(records, reduce_fn))
    return got


# -- tests ----------------------------------------------------------------------------------

@SETTINGS
@given(records=_records(scalar_keys), r=st.integers(1, 6),
       combine=st.sampled_from([None, reduce_sum, reduce_sum_generic]),
       reduce_fn=st.sampled_from([reduce_sum, reduce_sum_generic]))
def test_sum_jobs_match_reference_scalar_keys(records, r, combine, reduce_fn):
    with tempfile.TemporaryDirectory() as tmp:
        _check(records, reduce_fn, run_engine(pathlib.Path(tmp), records, reduce_fn=reduce_fn,
                                              combine=combine, partitions=r))


@SETTINGS
@given(records=_records(scalar_keys), r=st.integers(1, 6), map_fn=st.sampled_from([map_yield, map_list]),
       reduce_fn=st.sampled_from([reduce_list, reduce_pairs]))
def test_value_order_jobs_match_reference_scalar_keys(records, r, map_fn, reduce_fn):
    """Without a combiner a key's values reach reduce in input order (map tasks in file order)."""
    with tempfile.TemporaryDirectory() as tmp:
        _check(records, reduce_fn, run_engine(pathlib.Path(tmp), records, map_fn=map_fn,
                                              reduce_fn=reduce_fn, partitions=r))


@SETTINGS
@given(records=_records(all_keys), r=st.integers(1, 6),
       combine=st.sampled_from([None, reduce_sum, reduce_sum_generic]),
       reduce_fn=st.sampled_from([reduce_sum, reduce_sum_generic]), map_fn=st.sampled_from([map_yield, map_list]))
def test_sum_jobs_match_reference_with_list_keys(records, r, combine, reduce_fn, map_fn):
    with tempfile.TemporaryDirectory() as tmp:
        _check(records, reduce_fn, run_engine(pathlib.Path(tmp), records, map_fn=map_fn, reduce_fn=reduce_fn,
                                              combine=combine, partitions=r))


@SETTINGS
@given(records=_records(all_keys), r=st.integers(1, 6), map_fn=st.sampled_from([map_yield, map_list]))
def test_list_jobs_match_reference_with_list_keys(records, r, map_fn):
    with tempfile.TemporaryDirectory() as tmp:
        _check(records, reduce_list, run_engine(pathlib.Path(tmp), records, map_fn=map_fn,
                                                reduce_fn=reduce_list, partitions=r))


def reduce_last(key, values):
    last = None
    for last in values:
        pass
    return last


_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _as_text(s: str) -> str:
    """The text format's documented rendering: escapes only in a field holding a tab, LF or CR."""
    return s.translate(_TEXT_ESCAPES) if any(c in s for c in "\t\n\r") else s


@SETTINGS
@given(records=st.lists(st.tuples(texts, texts), max_size=40), r=st.integers(1, 4))
@example(records=[("a\\nb", "c\\td"), ("tab\there", "new\nline"), ("\\", "\\\\"), ("cr\r", "x")], r=1)
def test_text_format_one_line_per_record(records, r):
    """Text part files keep one record per line; fields read back as written (lossy by design:
    a field holding a tab, newline or CR comes back escaped; the json format is exact)."""
    with tempfile.TemporaryDirectory() as tmp:
        RECORDS[:] = records
        disk = pathlib.Path(tmp) / "in"
        disk.mkdir()
        (disk / "f.txt").write_text("".join(f"{i}\n" for i in range(len(records))))
        job = geryon.Job(map=map_yield, reduce=reduce_last, partitions=r, format="text", reader="lines",
                         name="txt")
        result = job.run([str(disk)], out=str(pathlib.Path(tmp) / "out"), workers=1)
        got = list(result)
        want = [(_as_text(k), _as_text(v)) for k, v in reference(records, reduce_last)]
        assert canonical(got) == canonical(want)
        lines = sum(pathlib.Path(p).read_bytes().count(b"\n") for p in result.parts)
        assert lines == len(want)


def _rank(k):
    return {int: 0, str: 1, tuple: 3}[type(k)]


@SETTINGS
@given(records=_records(st.one_of(texts, ints)), r=st.integers(1, 6))
def test_each_part_is_in_key_order(records, r):
    """Output is in partition then key order: numbers before str, each in Python's order."""
    with tempfile.TemporaryDirectory() as tmp:
        result = run_engine(pathlib.Path(tmp), records, reduce_fn=reduce_sum, partitions=r)
        assert len(result.parts) == r
        seen = set()
        for part in result.parts:
            with open(part, encoding="utf-8", newline="\n") as f:
                keys = [json.loads(line.split("\t")[0]) for line in f]
            assert keys == sorted(keys, key=lambda k: (_rank(k), k))
            assert seen.isdisjoint(keys)
            seen.update(keys)


def test_two_workers_match_reference(tmp_path):
    rng = random.Random(7)
    records = [(rng.choice(["a", "b\tc", "d\ne", 5, -3, b"x", "é"]), rng.randint(0, 9)) for _ in range(500)]
    got = _check(records, reduce_list, run_engine(tmp_path, records, reduce_fn=reduce_list, partitions=4,
                                                  files=6, workers=2))
    assert len(got) == 7


# -- a tiny sort budget: map-side spills and the reduce-side streaming merge ----------------

@pytest.fixture
def path_counts(monkeypatch):
    """Count spills and streaming merges (tasks run in this process with one worker)."""
    counts = collections.Counter()
    spill, streaming = sortbuffer.SortBuffer.spill, reducetask._Reducing.groups_streaming

    def counting_spill(self):
        counts["spills"] += bool(self._store)
        return spill(self)

    def counting_streaming(self):
        counts["streaming"] += 1
        return streaming(self)

    monkeypatch.setattr(sortbuffer.SortBuffer, "spill", counting_spill)
    monkeypatch.setattr(reducetask._Reducing, "groups_streaming", counting_streaming)
    return counts


def _many_records(seed, n, distinct, with_lists=False):
    rng = random.Random(seed)
    words = [f"w{rng.getrandbits(40):x}\t{i}" for i in range(distinct)]
    out = []
    for _ in range(n):
        roll = rng.random()
        if with_lists and roll < 0.1:
            key = [rng.choice(words), rng.randint(0, 3)]
        elif roll < 0.2:
            key = rng.randint(0, distinct)
        else:
            key = rng.choice(words)
        out.append((key, rng.randint(0, 100)))
    return out


@pytest.mark.parametrize("reduce_fn,combine", [(reduce_sum, reduce_sum), (reduce_sum_generic, None),
                                               (reduce_list, None), (reduce_sum_generic, reduce_sum_generic)])
def test_tiny_sort_budget_spills_and_still_matches(tmp_path, path_counts, reduce_fn, combine):
    records = _many_records(1, 100_000, 60_000)
    result = run_engine(tmp_path, records, reduce_fn=reduce_fn, combine=combine, partitions=2, files=4,
                        sort_budget=1 << 20)
    _check(records, reduce_fn, result)
    assert path_counts["spills"] >= 4, path_counts
    if reduce_fn is not reduce_sum:  # a plain-sum reduce aggregates in a dictionary instead
        assert path_counts["streaming"] >= 1, path_counts


def test_tiny_sort_budget_with_list_keys(tmp_path, path_counts):
    records = _many_records(2, 60_000, 20_000, with_lists=True)
    result = run_engine(tmp_path, records, reduce_fn=reduce_list, partitions=3, files=4, sort_budget=1 << 20)
    _check(records, reduce_list, result)
    assert path_counts["spills"] >= 4 and path_counts["streaming"] >= 1, path_counts


def test_hot_key_longer_than_a_block_keeps_value_order(tmp_path, path_counts):
    """A key with more values than a block holds (65536), across spills and map tasks."""
    rng = random.Random(3)
    records = [("hot" if rng.random() < 0.7 else f"k{rng.randrange(30_000)}", i) for i in range(150_000)]
    result = run_engine(tmp_path, records, reduce_fn=reduce_list, partitions=2, files=2, sort_budget=1 << 20)
    got = dict(result)
    ref = dict(reference(records, reduce_list))
    assert got["hot"] == ref["hot"]
    assert got == ref
    assert path_counts["spills"] >= 2 and path_counts["streaming"] >= 1, path_counts


# -- regressions found by the tests above, pinned as plain examples ---------------------------

def _run_pairs(tmp_path, map_fn, reduce_fn, combine=None):
    disk = tmp_path / "in"
    disk.mkdir()
    (disk / "one.txt").write_text("x\n")
    job = geryon.Job(map=map_fn, reduce=reduce_fn, combine=combine, partitions=1, format="json", name="pin")
    return sorted(job.run([str(disk)], out=str(tmp_path / "out"), workers=1), key=repr)


def map_gen_list_key(key, value):
    yield "s", 1
    yield ["l", 1], 2
    yield "t", 3


def map_returns_list_key(key, value):
    return [("s", 1), (["l", 1], 2), ("t", 3)]


def map_tuple_keys(key, value):
    return [("t", 3), (("l",), 2)]


@pytest.mark.parametrize("combine", [None, reduce_sum])
def test_generator_yielding_a_list_key_keeps_that_pair(tmp_path, combine):
    got = _run_pairs(tmp_path, map_gen_list_key, reduce_sum, combine)
    assert got == [("s", 1), ("t", 3), (("l", 1), 2)]


def test_returned_list_with_a_list_key_counts_each_pair_once(tmp_path):
    got = _run_pairs(tmp_path, map_returns_list_key, reduce_list)
    assert got == [("s", [1]), ("t", [3]), (("l", 1), [2])]


@pytest.mark.parametrize("combine", [None, reduce_sum])
def test_tuple_keys_with_a_sum_reduce_count_once(tmp_path, combine):
    got = _run_pairs(tmp_path, map_tuple_keys, reduce_sum, combine)
    assert got == [("t", 3), (("l",), 2)]


def test_tuple_and_none_keys_through_spills_and_streaming_merge(tmp_path, path_counts):
    """Tuples and None are carried types; their order must agree between map and reduce sides."""
    rng = random.Random(5)
    pool = [("k", i) for i in range(40_000)] + [None, "s", 7]
    records = [(rng.choice(pool), rng.randint(0, 9)) for _ in range(120_000)]
    result = run_engine(tmp_path, records, reduce_fn=reduce_list, partitions=1, files=4, sort_budget=1 << 20)
    got = list(result)
    keys = [k for k, _ in got]
    assert len(keys) == len(set(keys)), "a key was written in more than one record"
    assert canonical(got) == canonical(reference(records, reduce_list))
    assert path_counts["spills"] >= 2 and path_counts["streaming"] >= 1, path_counts


def test_plain_sum_reduce_of_floats_equals_pythons_sum(tmp_path):
    """`return sum(values)` gives what Python's sum gives over the values in order, floats too.

    (The engine runs such a reduce as dictionary arithmetic; that must not change the result.)
    """
    records = [("k", 1e16), ("j", 0.1), ("k", 1.0), ("k", 1.0), ("j", 0.2), ("j", 0.3)]
    # three files of two records, one map task each
    result = run_engine(tmp_path, records, reduce_fn=reduce_sum, partitions=1, files=3, split_size=4)
    assert result.report.map.tasks == 3
    assert dict(result) == {"k": sum([1e16, 1.0, 1.0]), "j": sum([0.1, 0.2, 0.3])}
    assert dict(result) == dict(reference(records, reduce_sum))


def test_no_reduce_writes_every_value_in_order(tmp_path):
    """reduce=None is the identity reduce: one output record per value, grouped and key-sorted."""
    rng = random.Random(9)
    records = [(rng.choice(["b", "a", "c\td", 3]), i) for i in range(300)]
    result = run_engine(tmp_path, records, reduce_fn=None, partitions=2, files=3, split_size=64)
    got = list(result)
    want = [(k, v) for k, vals in reference(records, reduce_list) for v in vals]
    assert canonical(got) == canonical(want)
    for key in {k for k, _ in want}:
        assert [v for k, v in got if k == key] == [v for k, v in want if k == key]
