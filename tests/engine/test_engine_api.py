"""The Python API (Job.run -> JobResult), counters, and the lines reader across split boundaries."""
from __future__ import annotations

import collections
import json
import pathlib
import random

import pytest

import geryon


def words_map(key, value):
    geryon.increment_counter("wc", "records")
    for w in value.split():
        geryon.increment_counter("wc", "words", 1)
        yield w, 1


def total(key, values):
    geryon.increment_counter("wc", "keys")
    return sum(values)


def typed_map(key, value):
    for i, w in enumerate(value.split()):
        yield w, {"n": i, "tags": [w, len(w)], "none": None, "f": 0.5}
        yield len(w), [w]


def collect(key, values):
    return sorted(json.dumps(v, sort_keys=True) for v in values)


@pytest.fixture
def disk(tmp_path: pathlib.Path) -> pathlib.Path:
    d = tmp_path / "disk"
    d.mkdir()
    rng = random.Random(11)
    vocab = ["a", "bb", "ccc", "déjà", "日本", "x\\ny"]
    for i in range(12):
        (d / f"f{i:02d}.txt").write_text("\n".join(" ".join(rng.choice(vocab) for _ in range(20)) for _ in range(5)))
    return d


def _oracle(disk: pathlib.Path) -> collections.Counter:
    c: collections.Counter = collections.Counter()
    for p in sorted(disk.iterdir()):
        c.update(p.read_text().split())
    return c


@pytest.mark.parametrize("workers", [1, 2])
def test_run_yields_typed_pairs_and_sums_counters(disk, tmp_path, workers):
    result = geryon.Job(map=words_map, reduce=total, partitions=3, split_size=300).run(
        [str(disk)], out=str(tmp_path / "out"), workers=workers)
    assert isinstance(result, geryon.JobResult)
    pairs = list(result)
    oracle = _oracle(disk)
    assert all(type(k) is str and type(v) is int for k, v in pairs)
    assert dict(pairs) == dict(oracle) and len(pairs) == len(oracle)
    assert [pathlib.Path(p).name for p in result.parts] == [f"part-{r:05d}" for r in range(3)]
    assert result.report.map.tasks > 1  # counters come from several tasks
    assert result.counters["wc"] == {"records": 12, "words": sum(oracle.values()), "keys": len(oracle)}


def test_json_values_round_trip_with_types(disk, tmp_path):
    result = geryon.Job(map=typed_map, reduce=collect, partitions=2, format="json").run(
        [str(disk)], out=str(tmp_path / "out"), workers=1)
    pairs = list(result)
    by_key = dict(pairs)
    assert len(by_key) == len(pairs)
    assert {type(k) for k in by_key} == {str, int}
    assert by_key[3][0] == '["ccc"]'
    first = json.loads(by_key["ccc"][0])
    assert set(first) == {"n", "tags", "none", "f"} and first["tags"] == ["ccc", 3] and first["none"] is None


def test_text_format_pairs_are_str(disk, tmp_path):
    result = geryon.Job(map=words_map, reduce=total, partitions=2, format="text").run(
        [str(disk)], out=str(tmp_path / "out"), workers=1)
    pairs = list(result)
    assert all(type(k) is str and type(v) is str for k, v in pairs)
    assert {k: int(v) for k, v in pairs} == dict(_oracle(disk))


COUNTING_MAP = """awk '{ for (i = 1; i <= NF; i++) print $i "\\t1"; print "reporter:counter:stream,lines,1" > "/dev/stderr" }'"""
COUNTING_REDUCE = """awk -F '\\t' '
  ($1 "") != w { if (NR > 1) print w "\\t" n; w = $1; n = 0; print "reporter:counter:stream,keys,1" > "/dev/stderr" }
  { n += $2 }
  END { if (NR > 0) print w "\\t" n; print "reporter:status:done" > "/dev/stderr" }'"""


@pytest.mark.parametrize("workers", [1, 2])
def test_streaming_reporter_counters_are_summed(disk, tmp_path, workers):
    result = geryon.Job(map=COUNTING_MAP, reduce=COUNTING_REDUCE, partitions=3, format="text", split_size=300).run(
        [str(disk)], out=str(tmp_path / "out"), workers=workers)
    oracle = _oracle(disk)
    assert {k: int(v) for k, v in result} == dict(oracle)
    assert result.report.map.tasks > 1
    # 12 files of 5 lines; every file gets a final newline added, so 60 lines in all.
    assert result.counters["stream"] == {"lines": 60, "keys": len(oracle)}


def test_streaming_counters_through_the_cli(cli, disk, tmp_path):
    out = tmp_path / "out"
    res = cli("mapreduce", "{ " + COUNTING_MAP + " }", "{ " + COUNTING_REDUCE + " }", disk, "--streaming",
              "-R", 2, "--out", out, "-j", 2, "--split-size", 300)
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "part-00000", "part-00001"]


# -- the lines reader across split boundaries ---------------------------------------------

def _line_corpus(final_newline: bool, seed: int) -> str:
    rng = random.Random(seed)
    lines = []
    for i in range(1400):
        kind = rng.random()
        if kind < 0.05:
            body = ""  # an empty line
        elif kind < 0.08:
            body = "long " + "é" * rng.randint(600, 2500)  # longer than a split, multibyte
        else:
            body = " ".join(rng.choice(["α", "beta", "日本語", "x"]) for _ in range(rng.randint(1, 8)))
        lines.append(f"{i:05d} {body}" if body else "")
    text = "\n".join(lines)
    return text + "\n" if final_newline else text


def int_total(key, values):
    return sum(int(v) for v in values)


def lines_map(key, value):
    yield value, 1


def _expected_lines(texts: list[str]) -> collections.Counter:
    c: collections.Counter = collections.Counter()
    for t in texts:
        c.update(t.split("\n")[:-1] if t.endswith("\n") else t.split("\n"))
    return c


@pytest.mark.parametrize("final_newline", [True, False], ids=["final-newline", "no-final-newline"])
@pytest.mark.parametrize("workers", [1, 2])
def test_lines_reader_one_record_per_line_across_splits(tmp_path, final_newline, workers):
    disk = tmp_path / "disk"
    disk.mkdir()
    texts = [_line_corpus(final_newline, 1), _line_corpus(final_newline, 2)[:3000], "single line, no newline"]
    for i, t in enumerate(texts):
        (disk / f"t{i}.txt").write_text(t, encoding="utf-8")
    assert (disk / "t0.txt").stat().st_size > 50_000
    result = geryon.Job(map=lines_map, reduce=total, partitions=3, reader="lines", split_size=1024,
                        format="json").run([str(disk)], out=str(tmp_path / "out"), workers=workers)
    assert result.report.map.tasks > 50
    got = dict(result)
    assert got == dict(_expected_lines(texts))
    assert result.counters["wc"]["keys"] == len(got)


def test_lines_reader_through_the_cli(cli, tmp_path, parts):
    disk = tmp_path / "disk"
    disk.mkdir()
    text = _line_corpus(False, 3)
    (disk / "big.txt").write_text(text, encoding="utf-8")
    script = tmp_path / "lines.py"
    script.write_text("def map(key, value):\n    yield value, 1\n\ndef reduce(key, values):\n    return sum(values)\n")
    out = tmp_path / "out"
    res = cli("mapreduce", script, script, disk, "--reader", "lines", "--split-size", "1k", "-R", 2,
              "--format", "json", "--out", out, "-q")
    assert res.exit_code == 0, res.stderr
    got: dict = {}
    for data in parts(out).values():
        for line in data.decode().splitlines():
            k, v = line.split("\t")
            got[json.loads(k)] = json.loads(v)
    assert got == dict(_expected_lines([text]))


@pytest.mark.parametrize("final_newline", [True, False], ids=["final-newline", "no-final-newline"])
def test_streaming_lines_reader_sees_every_line_once(tmp_path, final_newline):
    disk = tmp_path / "disk"
    disk.mkdir()
    text = _line_corpus(final_newline, 4)
    (disk / "big.txt").write_text(text, encoding="utf-8")
    result = geryon.Job(map="awk '{ print $0 \"\\t1\" }'", reduce=int_total, partitions=2, reader="lines",
                        split_size=1024, format="json").run([str(disk)], out=str(tmp_path / "out"), workers=2)
    assert result.report.map.tasks > 50
    got = {k: int(v) for k, v in result}
    assert got == dict(_expected_lines([text]))


@pytest.mark.parametrize("text", [
    "a\nbb\n\nccc\n",
    "a\nbb\n\nccc",
    "\n\n\n",
    "only",
    "é\n日本語\n\nx𝄞y\nlast without newline é",
    "",
], ids=["newline-end", "no-newline-end", "blank-lines", "one-line", "multibyte", "empty"])
def test_every_split_size_gives_every_line_once(tmp_path, text):
    """The lines reader over every possible cut of a file: each line exactly once, in order."""
    from geryon.disks.chunk import ChunkFS
    from geryon.records.readers import read_records
    from geryon.records.split import list_files, plan_splits

    (tmp_path / "f.txt").write_bytes(text.encode("utf-8"))
    disk = ChunkFS(str(tmp_path))
    want = text.split("\n")
    if want[-1] == "":
        want.pop()
    size = len(text.encode("utf-8"))
    for split_size in range(1, size + 2):
        splits = plan_splits("d", list_files(disk), split_size, cut_files=True)
        got = [v for s in splits for _k, v in read_records(disk, s, "lines")]
        assert got == want, split_size
    disk.close()


def test_streaming_job_result_iterates_with_default_format(disk, tmp_path):
    """A streaming reducer writes key<TAB>value text; the result reads it back as (str, str)
    pairs whatever the job's default output format, rather than failing half way through."""
    result = geryon.Job(map=COUNTING_MAP, reduce=COUNTING_REDUCE, partitions=2).run(
        [str(disk)], out=str(tmp_path / "out"), workers=1)
    pairs = list(result)
    assert all(type(k) is str and type(v) is str for k, v in pairs)
    assert {k: int(v) for k, v in pairs} == dict(_oracle(disk))
