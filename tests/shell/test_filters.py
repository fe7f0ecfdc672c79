"""The filters' cores and stream functions, in process: intermediate, agg, idx."""
from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from shell.agg import Aggregator, aggregate, parse_count
from shell.errors import BadRecord, OutputUnavailable, ShellError
from shell.idx import index, index_lines, index_words
from shell.intermediate import partition_paths, route_lines, write_partitions
from shell.partition import geryon_partition_bytes, geryon_partitioner
from shell.stream import line_batches, word_blocks


# --- intermediate -----------------------------------------------------------------

def test_route_lines_keeps_lines_unchanged_and_drops_others() -> None:
    lines = [b"a 1\n", b"b\t2\r\n", b"\n", b"one\n", b"x y z\n", b"d 1"]
    buckets, dropped = route_lines(lines, 3, geryon_partitioner(3))
    assert dropped == 3
    assert buckets == [[], [b"a 1\n", b"d 1\n"], [b"b\t2\r\n"]]  # 97%3, 100%3, 98%3


def test_write_partitions_creates_all_files(tmp_path: Path) -> None:
    src = io.BytesIO(b"a 1\nb 2\nbad line here\nd 1\n")
    result = write_partitions(src, 4, str(tmp_path / "p"))
    assert result.paths == partition_paths(str(tmp_path / "p"), 4)
    assert (result.records, result.dropped) == (3, 1)
    contents = [Path(p).read_bytes() for p in result.paths]
    assert contents == [b"d 1\n", b"a 1\n", b"b 2\n", b""]  # 100%4, 97%4, 98%4; p3 empty


def test_write_partitions_truncates_old_files(tmp_path: Path) -> None:
    old = tmp_path / "p0"
    old.write_bytes(b"stale\n")
    write_partitions(io.BytesIO(b""), 2, str(tmp_path / "p"))
    assert old.read_bytes() == b""
    assert (tmp_path / "p1").exists()


def test_write_partitions_small_batches_same_output(tmp_path: Path) -> None:
    data = b"".join(b"key%d %d\n" % (i % 37, i) for i in range(2000))
    one = write_partitions(io.BytesIO(data), 5, str(tmp_path / "one"))
    many = write_partitions(io.BytesIO(data), 5, str(tmp_path / "many"), batch_bytes=7)
    assert [Path(p).read_bytes() for p in one.paths] == [Path(p).read_bytes() for p in many.paths]
    for r, path in enumerate(one.paths):
        for line in Path(path).read_bytes().splitlines():
            assert geryon_partition_bytes(line.split()[0], 5) == r


def test_write_partitions_binary_keys(tmp_path: Path) -> None:
    data = "é 1\n€ 2\n".encode() + b"\xff\xfe 3\n"
    result = write_partitions(io.BytesIO(data), 2, str(tmp_path / "p"))
    out = b"".join(Path(p).read_bytes() for p in result.paths)
    assert sorted(out.splitlines(keepends=True)) == sorted(data.splitlines(keepends=True))
    assert Path(result.paths[0xE9 % 2]).read_bytes().startswith("é 1\n".encode())


def test_write_partitions_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(OutputUnavailable, match="cannot create .*nodir/p0") as info:
        write_partitions(io.BytesIO(b"a 1\n"), 2, str(tmp_path / "nodir" / "p"))
    assert isinstance(info.value, ShellError)
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_write_partitions_rejects_n_zero(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_partitions(io.BytesIO(b""), 0, str(tmp_path / "p"))


# --- agg ----------------------------------------------------------------------------

def test_aggregate_sums_runs() -> None:
    src = io.BytesIO(b"a 1\na 2\nb\t5\nc 1\nc -1\nc +3\n")
    dst = io.BytesIO()
    aggregator = aggregate(src, dst)
    assert dst.getvalue() == b"a 3\nb 5\nc 3\n"
    assert (aggregator.lines, aggregator.dropped) == (6, 0)


def test_aggregate_unsorted_gives_one_line_per_run_and_counts_dropped() -> None:
    dst = io.BytesIO()
    aggregator = aggregate(io.BytesIO(b"a 1\nb 1\n\nbroken\na 1\n"), dst)
    assert dst.getvalue() == b"a 1\nb 1\na 1\n"
    assert aggregator.dropped == 2


def test_aggregate_empty_input() -> None:
    dst = io.BytesIO()
    aggregate(io.BytesIO(b""), dst)
    assert dst.getvalue() == b""


@pytest.mark.parametrize("count", [b"x", b"1.5", b"1_000", b"0x10", b"--1", "\u0661".encode()])
def test_bad_count_names_the_line(count: bytes) -> None:
    dst = io.BytesIO()
    src = io.BytesIO(b"a 1\nb 2\nb " + count + b"\n")
    with pytest.raises(BadRecord, match=r"agg: line 3: count is not an integer") as info:
        aggregate(src, dst)
    assert info.value.lineno == 3
    assert dst.getvalue() == b"a 1\n"  # runs closed before the bad line were written


def test_parse_count_accepts_signs() -> None:
    assert [parse_count(f, 1) for f in (b"0", b"-12", b"+7", b"0012")] == [0, -12, 7, 12]


@given(st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c"]), st.integers(-5, 5)), max_size=60),
       st.integers(1, 10))
def test_aggregator_batches_do_not_matter(pairs: list[tuple[bytes, int]], cut: int) -> None:
    lines = [b"%s %d\n" % p for p in sorted(pairs)]
    whole = Aggregator()
    expected = whole.feed(lines) + whole.finish()
    pieces = Aggregator()
    got: list[bytes] = []
    for i in range(0, len(lines), cut):
        pieces.feed(lines[i:i + cut], got)
    got += pieces.finish()
    assert got == expected
    totals: Counter[bytes] = Counter()
    for k, v in pairs:
        totals[k] += v
    assert got == [b"%s %d\n" % (k, totals[k]) for k in sorted(totals)]


# --- idx ----------------------------------------------------------------------------

def test_index_words_follows_the_seed() -> None:
    text = b"Hello, World... The END. foo_bar x2 e.g. caf\xc3\xa9 don't\n\n  TABS\there"
    assert index_words(text) == [
        b"hello", b"world", b"the", b"end", b"foo_bar", b"x2", b"e", b"g", b"caf",
        b"don", b"t", b"tabs", b"here",
    ]


def test_index_lines_format() -> None:
    assert index_lines(b"A b.\n") == b"a 1\nb 1\n"
    assert index_lines(b"... --- \n") == b""


def test_index_stream() -> None:
    dst = io.BytesIO()
    assert index(io.BytesIO(b"one two\nthree"), dst) == 3
    assert dst.getvalue() == b"one 1\ntwo 1\nthree 1\n"


@given(st.binary(max_size=400), st.integers(1, 17))
def test_word_blocks_never_split_words(data: bytes, size: int) -> None:
    alphabet_data = data.translate(bytes.maketrans(b"\x00\x01\x02", b"a. "))
    blocks = list(word_blocks(io.BytesIO(alphabet_data), size))
    assert b"".join(blocks) == alphabet_data
    assert [w for b in blocks for w in index_words(b)] == index_words(alphabet_data)


def test_index_stream_small_blocks_matches_whole() -> None:
    text = b"The quick brown fox, jumps over the lazy dog. " * 50
    dst = io.BytesIO()
    index(io.BytesIO(text), dst, batch_bytes=5)
    assert dst.getvalue() == index_lines(text)


def test_line_batches_bounded() -> None:
    data = b"".join(b"line %d\n" % i for i in range(1000))
    batches = list(line_batches(io.BytesIO(data), 100))
    assert b"".join(b"".join(b) for b in batches) == data
    assert max(sum(map(len, b)) for b in batches) < 100 + 20
