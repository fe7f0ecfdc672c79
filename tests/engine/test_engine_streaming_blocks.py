"""A streaming command's stdout read in blocks of whole lines (`StreamingProcess.blocks`,
`split_block`: the map and reduce sides' fast path) gives exactly what reading it line by line
gives (`lines`, `split_line`): long lines, empty lines, no final newline, tabs, bad UTF-8."""
from __future__ import annotations

import pathlib
import random

import pytest

from geryon.mapreduce import streaming
from geryon.mapreduce.streaming import StreamingProcess, split_block, split_line

CASES = {
    "plain": b"a\t1\nb\t2\n",
    "no final newline": b"a\t1\nlast\tline",
    "empty lines and no tab": b"\n\nkey only\n\t\n\tvalue only\n",
    "tabs and carriage returns": b"k\tv\tw\r\nx\r\n",
    "bad utf-8": b"caf\xe9\t\xff\xfe\nok\t\xc3\xa9\n",
    "a line longer than a block": b"x" * (streaming.READ_BLOCK * 2 + 17) + b"\tv\nshort\t1\n",
    "many short lines": b"".join(b"%d\t%d\n" % (i, i * i) for i in range(300_000)),
}


def _run(data: bytes, tmp: pathlib.Path, how: str) -> tuple[list, bytes]:
    src = tmp / "out.bin"
    src.write_bytes(data)
    with StreamingProcess(("cat", str(src)), [], cwd=str(tmp)) as proc:
        if how == "lines":
            raw = [line + b"\n" for line in proc.lines()]
            pairs = [split_line(line[:-1]) for line in raw]
            joined = b"".join(raw)
        else:
            blocks = list(proc.blocks())
            assert all(b.endswith(b"\n") for b in blocks)
            pairs = [p for b in blocks for p in split_block(b)]
            joined = b"".join(blocks)
        proc.wait()
    return pairs, joined


@pytest.mark.parametrize("name", sorted(CASES))
def test_blocks_give_what_lines_give(tmp_path: pathlib.Path, name: str) -> None:
    data = CASES[name]
    by_lines = _run(data, tmp_path, "lines")
    by_blocks = _run(data, tmp_path, "blocks")
    assert by_blocks == by_lines
    assert by_blocks[1] == (data if data.endswith(b"\n") else data + b"\n")


def test_random_outputs_split_alike(tmp_path: pathlib.Path, monkeypatch) -> None:
    monkeypatch.setattr(streaming, "READ_BLOCK", 7)   # block ends fall everywhere
    rng = random.Random(3)
    for _ in range(30):
        data = bytes(rng.choice(b"ab\t\n\xc3\xa9") for _ in range(rng.randrange(0, 200)))
        assert _run(data, tmp_path, "blocks") == _run(data, tmp_path, "lines")


def dup_map(key, value):
    for i, word in enumerate(value.split()):
        yield (len(word) if i % 3 == 0 else word), f"{key[-5:]}:{i}"   # ints and strs, repeated keys


@pytest.mark.parametrize("reduce", [None, "cat"])
def test_ungrouped_reduce_gives_what_the_grouped_merge_gives(tmp_path: pathlib.Path, reduce) -> None:
    """An identity or streaming reduce that fits in memory takes the flat path; at a budget it
    does not fit, the streamed, grouped merge: the parts are the same bytes."""
    from geryon.mapreduce.job import Job

    rng = random.Random(5)
    disk = tmp_path / "in"
    disk.mkdir()
    words = ["a", "bb", "hot", "c\tx", "ddd", "e"]
    for f in range(4):
        (disk / f"f{f}.txt").write_text("".join(" ".join(rng.choice(words) for _ in range(9)) + "\n"
                                                for _ in range(1500)))
    parts = []
    for budget in (256 << 20, 1 << 20):
        out = tmp_path / f"out{budget}"
        job = Job(map=dup_map, reduce=reduce, partitions=3, reader="lines", split_size=20_000, format="text",
                  sort_budget=budget)
        job.run([str(disk)], out=str(out), workers=2)
        parts.append([p.read_bytes() for p in sorted(out.iterdir()) if p.name.startswith("part-")])
    assert parts[0] == parts[1] and all(parts[0])


def test_ungrouped_streaming_reduce_after_a_streaming_map(tmp_path: pathlib.Path) -> None:
    """After a streaming map, the reducer's lines hold keys and values as they came (tabs in
    the value too), on the flat path as on the grouped one."""
    from geryon.mapreduce.job import Job

    rng = random.Random(9)
    disk = tmp_path / "in"
    disk.mkdir()
    for f in range(3):
        (disk / f"f{f}.txt").write_text("".join(f"{rng.choice('abcde')}{rng.randrange(30)}\tv\t{i}\n"
                                                for i in range(3000)))
    parts = []
    for budget in (256 << 20, 1 << 20):
        out = tmp_path / f"out{budget}"
        Job(map="cat", reduce="cat", partitions=2, reader="lines", split_size=20_000,
            sort_budget=budget).run([str(disk)], out=str(out), workers=2)
        parts.append([p.read_bytes() for p in sorted(out.iterdir()) if p.name.startswith("part-")])
    assert parts[0] == parts[1] and all(parts[0])
    assert b"\tv\t" in parts[0][0]   # the value's tab as it came
