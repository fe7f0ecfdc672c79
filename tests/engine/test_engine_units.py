"""Unit properties of the engine's pure pieces: byte sorting, splits, size parsing."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geryon.mapreduce.aggregate import sort_bytes
from geryon.disks.chunk import parse_size
from geryon.records.split import plan_balanced, split_count_for


@given(st.lists(st.binary(max_size=6), max_size=300))
@settings(max_examples=200, deadline=None)
def test_sort_bytes_is_sorted(keys):
    assert sort_bytes(list(keys)) == sorted(keys)


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=80), st.integers(1, 12))
@settings(max_examples=200, deadline=None)
def test_balanced_splits_keep_every_file_once_in_order(sizes, count):
    files = [(f"/f{i:03d}", n) for i, n in enumerate(sizes)]
    splits = plan_balanced("d", files, count)
    got = [(r.path, r.end) for s in splits for r in s.ranges]
    assert got == files
    assert len(splits) <= count
    assert all(s.ranges for s in splits)


def test_split_count_is_a_multiple_of_the_slots():
    mib = 1 << 20
    assert split_count_for(121 * mib, 2, 64 * mib) == 2
    assert split_count_for(996 * mib, 2, 64 * mib) % 2 == 0
    assert split_count_for(10 * mib, 4, 64 * mib) == 4
    assert split_count_for(0, 2, 64 * mib) == 1


@pytest.mark.parametrize("text,value", [("64M", 64 << 20), ("1G", 1 << 30), ("4k", 4096), ("4096", 4096),
                                        ("1.5M", 3 << 19), ("2MiB", 2 << 20)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "x", "-1M", "0", "12Q"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_full_workdir_fails_the_job_as_disk_full(tmp_path):
    """A real ENOSPC while writing map output: a clear disk-full message, nothing committed."""
    import subprocess
    import sys

    import geryon

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)]).returncode != 0:
        pytest.fail("this test needs root to mount a tiny tmpfs (CI runs as root)")
    try:
        disk = tmp_path / "in"
        disk.mkdir()
        (disk / "a.txt").write_text("".join(f"word{i} " for i in range(60_000)))
        out = tmp_path / "out"
        job = geryon.Job(map=_words, reduce=_total, name="full")
        with pytest.raises(geryon.JobFailed, match="no space left for map output"):
            job.run([str(disk)], out=str(out), workers=1, workdir=str(mount))
        assert not list(out.glob("part-*"))
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _words(key, value):
    return {w: 1 for w in value.split()}


def _total(key, values):
    return sum(values)


def test_list_keys_with_mixed_element_types_merge_through_spills(tmp_path):
    """Lists whose elements differ in type at some position: spilled runs still merge."""
    import geryon

    disk = tmp_path / "in"
    disk.mkdir()
    (disk / "a.txt").write_text("".join(f"{i}\n" for i in range(40_000)))

    def mapper(key, line):
        i = int(line)
        yield ([i % 50, "x" if i % 3 else i % 7], i)

    def collect(key, values):
        return sorted(values)[:3]

    result = geryon.Job(map=mapper, reduce=collect, partitions=2, reader="lines", sort_budget=1 << 20,
                        name="mixed").run([str(disk)], out=str(tmp_path / "out"), workers=1)
    got = dict((tuple(k), v) for k, v in result)
    expected: dict = {}
    for i in range(40_000):
        expected.setdefault((i % 50, "x" if i % 3 else i % 7), []).append(i)
    assert got == {k: sorted(v)[:3] for k, v in expected.items()}


def test_capacity_holds_across_processes(tmp_path):
    """Four processes race to fill one chunk: the capacity holds, no file is left partial."""
    import subprocess
    import sys

    from geryon.disks.chunk import create_chunk, walk_size

    root = tmp_path / "c"
    create_chunk(str(root), 20_000)
    code = (
        "import sys\n"
        "from geryon.disks.chunk import ChunkFS\n"
        "from geryon.errors import DiskFull\n"
        "fs = ChunkFS(sys.argv[1])\n"
        "for i in range(12):\n"
        "    try:\n"
        "        with fs.openbin(f'p{sys.argv[2]}-{i}', 'w') as f:\n"
        "            for _ in range(10):\n"
        "                f.write(b'x' * 100)\n"
        "    except DiskFull:\n"
        "        pass\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root), str(n)]) for n in range(4)]
    assert [p.wait() for p in procs] == [0, 0, 0, 0]
    files = [p for p in root.iterdir() if not p.name.startswith(".")]
    assert walk_size(str(root)) <= 20_000
    assert all(p.stat().st_size == 1000 for p in files)
    assert 15 <= len(files) <= 20
    assert not [p for p in root.iterdir() if ".geryon-tmp-" in p.name]


@pytest.mark.parametrize("partitions", [1, 3])
def test_bytes_reader_word_count_equals_a_bytes_counter(tmp_path, partitions):
    """The example word count over raw bytes: keys stay bytes end to end, output is the same text."""
    import collections
    import pathlib

    from click.testing import CliRunner

    from geryon.cli import main

    examples = pathlib.Path(__file__).resolve().parents[2] / "examples"
    disk = tmp_path / "in"
    disk.mkdir()
    for i in range(30):
        (disk / f"f{i}").write_bytes(b"caf\xc3\xa9 \xff\xfe odd bytes %d\tand tabs\n" % (i % 7) * (i + 1))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["mapreduce", "-q", str(examples / "wordcount" / "map.py"),
                                    str(examples / "wordcount" / "reduce.py"), str(disk), "--reader", "bytes",
                                    "-R", str(partitions), "-j", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    got = {}
    for part in sorted(out.glob("part-*")):
        lines = part.read_bytes().splitlines()
        keys = [line.rsplit(b"\t", 1)[0] for line in lines]
        assert keys == sorted(keys)
        got.update((k, int(v)) for k, v in (line.rsplit(b"\t", 1) for line in lines))
    oracle: collections.Counter = collections.Counter()
    for f in sorted(disk.iterdir()):
        oracle.update(f.read_bytes().split())
    assert got == dict(oracle)
