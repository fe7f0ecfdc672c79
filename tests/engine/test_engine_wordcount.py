"""Word count on a real corpus equals a sequential Counter, and output bytes are reproducible."""
from __future__ import annotations

import collections
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PARTITIONS = (1, 3, 5)
WORKERS = (1, 2)


def _counts(records: list[tuple[str, str]]) -> dict[str, int]:
    keys = [k for k, _ in records]
    dupes = [k for k, n in collections.Counter(keys).items() if n > 1]
    assert dupes == [], f"keys written more than once: {dupes[:5]}"
    return {k: int(v) for k, v in records}


def _check_against(oracle: collections.Counter, got: dict[str, int]) -> None:
    missing = sorted(set(oracle) - set(got))
    extra = sorted(set(got) - set(oracle))
    assert missing == [] and extra == [], f"missing {missing[:5]}, extra {extra[:5]}"
    wrong = {k: (got[k], oracle[k]) for k in oracle if got[k] != oracle[k]}
    assert wrong == {}, f"{len(wrong)} wrong counts (got, want): {dict(list(wrong.items())[:5])}"
    assert got == dict(oracle)


def _check_parts(out: pathlib.Path, name: str, r: int, parts) -> None:
    assert sorted(parts(out)) == sorted(f"part-{i:05d}" for i in range(r))


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("r", PARTITIONS)
def test_python_wordcount_equals_counter(cli, corpus, wordcount, python_oracle, text_records, parts,
                                         tmp_path, r, workers):
    out = tmp_path / "out"
    res = cli("mapreduce", wordcount / "map.py", wordcount / "reduce.py", corpus,
              "-R", r, "-j", workers, "--out", out, "--name", "wc", "-q", "--split-size", "256k")
    assert res.exit_code == 0, res.stderr
    _check_parts(out, "wc", r, parts)
    _check_against(python_oracle, _counts(text_records(out)))


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("r", PARTITIONS)
def test_streaming_wordcount_equals_counter(cli, corpus, wordcount, streaming_oracle, text_records, parts,
                                            tmp_path, r, workers):
    out = tmp_path / "out"
    res = cli("mapreduce", wordcount / "map.sh", wordcount / "reduce.sh", corpus, "--streaming",
              "-R", r, "-j", workers, "--out", out, "--name", "wcs", "-q", "--split-size", "256k")
    assert res.exit_code == 0, res.stderr
    _check_parts(out, "wcs", r, parts)
    _check_against(streaming_oracle, _counts(text_records(out)))


def test_each_part_is_sorted_and_keys_partitioned_once(cli, corpus, wordcount, parts, tmp_path):
    out = tmp_path / "out"
    res = cli("mapreduce", wordcount / "map.py", wordcount / "reduce.py", corpus,
              "-R", 5, "-j", 2, "--out", out, "--name", "wc", "-q", "--split-size", "256k")
    assert res.exit_code == 0, res.stderr
    seen: set[str] = set()
    for data in parts(out).values():
        keys = [line.rpartition("\t")[0] for line in data.decode("utf-8").splitlines()]
        assert keys == sorted(keys)
        assert seen.isdisjoint(keys)
        seen.update(keys)


def test_python_api_wordcount_typed_pairs(corpus, python_oracle, tmp_path):
    """The same job through the Python API, json format: exact (str, int) pairs."""
    import geryon
    from geryon.mapreduce.job import load_script

    m = load_script(str(REPO / "examples/wordcount/map.py"))
    rd = load_script(str(REPO / "examples/wordcount/reduce.py"))
    result = geryon.Job(map=m.map, reduce=rd.reduce, combine=rd.combine, partitions=3, format="json",
                        split_size=256 << 10).run([str(corpus)], out=str(tmp_path / "out"), workers=2)
    pairs = list(result)
    assert all(type(k) is str and type(v) is int for k, v in pairs)
    assert dict(pairs) == dict(python_oracle)
    assert len(pairs) == len(python_oracle)


def test_text_format_result_iteration_round_trips_backslashes(corpus, python_oracle, tmp_path):
    """JobResult iteration of a text-format job gives back the keys that were written.

    Python source is full of words such as `'\\n'` (a backslash then n). Text fields are
    escaped only when they hold a tab, newline or CR, which words never do: such words
    must come back exactly, with no backslash sequence turned into a control character.
    """
    import geryon
    from geryon.mapreduce.job import load_script

    m = load_script(str(REPO / "examples/wordcount/map.py"))
    rd = load_script(str(REPO / "examples/wordcount/reduce.py"))
    result = geryon.Job(map=m.map, reduce=rd.reduce, combine=rd.combine, partitions=3, format="text").run(
        [str(corpus)], out=str(tmp_path / "out"), workers=1)
    got = {k: int(v) for k, v in result}
    assert any("\\n" in w for w in python_oracle)  # the corpus does hold such words
    assert got == dict(python_oracle)


# -- reproducible bytes -------------------------------------------------------------------

def _run_proc(geryon_proc, args, out, seed):
    proc = geryon_proc("mapreduce", *args, "--out", out, "-q", env={"PYTHONHASHSEED": str(seed)})
    assert proc.returncode == 0, proc.stderr
    return out


ORDER_JOB_MAP = '''
def map(key, value):
    # set iteration order depends on PYTHONHASHSEED; the engine's output must not
    for word in set(value.split()):
        yield word, key
'''

ORDER_JOB_REDUCE = '''
def reduce(key, values):
    return list(values)
'''


@pytest.fixture
def order_job(tmp_path):
    d = tmp_path / "orderjob"
    d.mkdir()
    (d / "map.py").write_text(ORDER_JOB_MAP)
    (d / "reduce.py").write_text(ORDER_JOB_REDUCE)
    return d


@pytest.mark.parametrize("kind", ["wordcount", "streaming", "order"])
def test_part_bytes_independent_of_hash_seed(geryon_proc, corpus, wordcount, order_job, parts, tmp_path, kind):
    if kind == "wordcount":
        args = [wordcount / "map.py", wordcount / "reduce.py", corpus, "-R", "3", "-j", "2"]
    elif kind == "streaming":
        args = [wordcount / "map.sh", wordcount / "reduce.sh", corpus, "--streaming", "-R", "3", "-j", "2",
                "--split-size", "512k"]
    else:
        args = [order_job / "map.py", order_job / "reduce.py", corpus, "-R", "3", "-j", "2",
                "--format", "json", "--split-size", "128k"]
    a = parts(_run_proc(geryon_proc, args, tmp_path / "a", 1))
    b = parts(_run_proc(geryon_proc, args, tmp_path / "b", 4242))
    assert len(a) == 3 and all(a.values())
    assert a == b


@pytest.mark.parametrize("streaming", [False, True])
def test_part_bytes_independent_of_workers(cli, corpus, wordcount, order_job, parts, tmp_path, streaming):
    if streaming:
        args = [wordcount / "map.sh", wordcount / "reduce.sh", corpus, "--streaming"]
    else:
        args = [order_job / "map.py", order_job / "reduce.py", corpus, "--format", "json"]
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        res = cli("mapreduce", *args, "-R", 4, "-j", workers, "--out", out, "-q", "--split-size", "128k",
                  "--name", "job")
        assert res.exit_code == 0, res.stderr
        outs.append(parts(out))
    assert len(outs[0]) == 4
    assert outs[0] == outs[1]


def test_part_bytes_independent_of_sort_budget(cli, corpus, order_job, parts, tmp_path):
    """Spilling (a 1 MiB budget) changes where records wait, never the output bytes."""
    outs = []
    for budget in ("1M", "256M"):
        out = tmp_path / budget
        res = cli("mapreduce", order_job / "map.py", order_job / "reduce.py", corpus, "--format", "json",
                  "-R", 2, "-j", 1, "--out", out, "-q", "--sort-budget", budget, "--name", "job")
        assert res.exit_code == 0, res.stderr
        outs.append(parts(out))
    assert outs[0] == outs[1]


def _inferno_hash(key: str, n: int) -> int:
    """Inferno Geryon's partition, written out from DESIGN.md: h = 65599*h + c in 32 bits."""
    h = 0
    for c in key:
        h = (65599 * h + ord(c)) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) % n


@pytest.mark.parametrize("partitioner", ["crc32", "geryon"])
def test_keys_land_in_their_partition(cli, corpus, wordcount, parts, tmp_path, partitioner):
    import zlib

    rule = {"crc32": lambda k, n: zlib.crc32(k.encode("utf-8")) % n, "geryon": _inferno_hash}[partitioner]
    out = tmp_path / "out"
    res = cli("mapreduce", wordcount / "map.py", wordcount / "reduce.py", corpus, "-R", 5, "--out", out,
              "--name", "p", "-q", "--partitioner", partitioner)
    assert res.exit_code == 0, res.stderr
    for r in range(5):
        keys = [line.rpartition("\t")[0] for line in (out / f"part-{r:05d}").read_text("utf-8").splitlines()]
        assert keys
        assert {rule(k, 5) for k in keys} == {r}


@pytest.mark.parametrize("streaming", [False, True], ids=["python", "streaming"])
def test_wordcount_with_the_smallest_sort_budget(cli, corpus, wordcount, python_oracle, streaming_oracle,
                                                 text_records, tmp_path, streaming):
    """One map task over the whole corpus with a 1 MiB budget: it spills, and counts stay exact."""
    if streaming:
        args, oracle = [wordcount / "map.sh", wordcount / "reduce.sh", corpus, "--streaming"], streaming_oracle
    else:
        args, oracle = [wordcount / "map.py", wordcount / "reduce.py", corpus], python_oracle
    out = tmp_path / "out"
    res = cli("mapreduce", *args, "-R", 2, "-j", 1, "--out", out, "-q", "--sort-budget", "1M")
    assert res.exit_code == 0, res.stderr
    _check_against(oracle, _counts(text_records(out)))
