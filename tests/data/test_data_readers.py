"""Readers: compressed files, tar members, auto detection, planning, bad records and --skip-bad."""
from __future__ import annotations

import io
import pathlib
import tarfile

import pytest

import geryon
from geryon.records.badrecords import BadRecord
from geryon.disks.chunk import ChunkFS
from geryon.records.compression import compress_bytes
from geryon.disks.resolve import open_path
from geryon.mapreduce.engine import plan
from geryon.errors import JobFailed
from geryon.records.readers import may_cut, raw_chunks, read_records, reader_for
from geryon.records.split import FileRange, Split

CODECS = [("gzip", "gz"), ("bz2", "bz2"), ("xz", "xz"), ("zstd", "zst")]
TEXT = "".join(f"line {i} héllo wörld\n" for i in range(3000))


def _all(root: pathlib.Path, reader: str, on_bad=None) -> list[tuple[object, object]]:
    disk = ChunkFS(str(root))
    try:
        out = []
        for p in sorted(root.iterdir()):
            split = Split(root.name, (FileRange("/" + p.name, 0, p.stat().st_size),))
            out += list(read_records(disk, split, reader, str(root), on_bad=on_bad))
        return out
    finally:
        disk.close()


@pytest.mark.parametrize("codec,ext", CODECS)
def test_every_reader_reads_compressed_files_decompressed(tmp_path, codec, ext):
    d = tmp_path / "d"
    d.mkdir()
    (d / f"t.txt.{ext}").write_bytes(compress_bytes(TEXT.encode(), codec))
    assert _all(d, "file") == [(f"d/t.txt.{ext}", TEXT)]
    assert _all(d, "bytes") == [(f"d/t.txt.{ext}", TEXT.encode())]
    assert [v for _, v in _all(d, "lines")] == TEXT.splitlines()
    split = Split("d", (FileRange(f"/t.txt.{ext}", 0, (d / f"t.txt.{ext}").stat().st_size),))
    disk = ChunkFS(str(d))
    assert b"".join(raw_chunks(disk, split, str(d))) == TEXT.encode()
    disk.close()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("top/subdir")
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
    return buf.getvalue()


MEMBERS = {"top/a.txt": b"alpha beta\n", "top/b.bin": b"\x00\xff\x10", "top/c.txt": "gamma é\n".encode()}


@pytest.mark.parametrize("name,codec", [("x.tar", None), ("x.tgz", "gzip"), ("x.tar.bz2", "bz2"),
                                        ("x.tar.xz", "xz"), ("x.tar.zst", "zstd")])
def test_tar_members_stream_in_one_pass(tmp_path, name, codec):
    d = tmp_path / "d"
    d.mkdir()
    data = _tar(MEMBERS)
    (d / name).write_bytes(compress_bytes(data, codec) if codec else data)
    want = [(f"d/{name}/top/a.txt", "alpha beta\n"), (f"d/{name}/top/b.bin", b"\x00\xff\x10"),
            (f"d/{name}/top/c.txt", "gamma é\n")]
    assert _all(d, "tar") == want
    assert _all(d, "auto") == want


def test_truncated_tar_is_a_bad_record_even_at_a_member_boundary(tmp_path):
    data = _tar(MEMBERS)
    boundary = 512 + 512  # after the first member's header and its one data block
    for cut in (520, 700, boundary, boundary + 100):  # in a's data, in its padding, after it, in b's header
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / "x.tar").write_bytes(data[:cut])
        with pytest.raises(BadRecord, match=rf"{d.name}:x.tar: truncated or corrupt tar"):
            _all(d, "tar")
        skipped: list[BadRecord] = []
        got = _all(d, "tar", on_bad=skipped.append)
        assert len(skipped) == 1 and [k for k, _ in got] == ([f"{d.name}/x.tar/top/a.txt"] if cut >= 523 else [])


def test_auto_picks_by_extension_and_only_plain_line_files_are_cut():
    paths = ["/a.tar.gz", "/a.tgz", "/m.mbox", "/mbox", "/c.warc.gz", "/x.txt", "/x.log.zst", "/x.py"]
    assert [reader_for("auto", p) for p in paths] == ["tar", "tar", "mbox", "mbox", "warc", "lines", "lines", "file"]
    assert reader_for("lines", "/x.tar") == "lines"
    assert may_cut("lines", "/big.txt") and may_cut("auto", "/big.log")
    assert not may_cut("lines", "/big.txt.gz") and not may_cut("file", "/big.txt") and not may_cut("auto", "/a.py")


def test_job_and_cli_offer_every_reader():
    from geryon.mapreduce.job import READERS as JOB_READERS
    from geryon.records.readers import READERS

    assert JOB_READERS == READERS


def test_planner_keeps_compressed_files_whole(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.txt").write_text(TEXT)
    (d / "b.txt.gz").write_bytes(compress_bytes(TEXT.encode() * 20, "gzip"))
    disk = open_path(str(d))
    job = geryon.Job(map=lambda k, v: [], reader="lines", split_size=4096)
    splits = [s for s, _ in plan(job, [disk])]
    for s in splits:
        for r in s.ranges:
            if r.path == "/b.txt.gz":
                assert (r.start, r.end) == (0, (d / "b.txt.gz").stat().st_size)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.txt").write_text(TEXT)
    assert len(plan(job, [open_path(str(plain))])) > 5  # a plain text file alone is cut
    disk.fs.close()


def _count_lines(key, value):
    yield "lines", 1


def _sum(key, values):
    return sum(values)


def test_skip_bad_skips_and_counts_then_fails_past_n(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    lines = [b"good %d" % i for i in range(100)]
    for i in (10, 50, 90):
        lines[i] = b"bad \xff %d" % i
    (d / "t.txt").write_bytes(b"\n".join(lines) + b"\n")
    kw = dict(map=_count_lines, reduce=_sum, reader="lines", partitions=1)
    with pytest.raises(JobFailed, match=r"d:t.txt: not UTF-8 text \(byte 74\)"):
        geryon.Job(**kw).run([str(d)], out=str(tmp_path / "o1"), workers=1)
    result = geryon.Job(**kw, skip_bad=3).run([str(d)], out=str(tmp_path / "o2"), workers=1)
    assert dict(result) == {"lines": 97}
    assert result.counters["geryon"]["skipped_records"] == 3
    with pytest.raises(JobFailed, match=r"more than 2 bad records \(--skip-bad 2\); the last: d:t.txt: not UTF-8"):
        geryon.Job(**kw, skip_bad=2).run([str(d)], out=str(tmp_path / "o3"), workers=1)


def test_skip_bad_through_the_cli(tmp_path, cli):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.tar").write_bytes(_tar(MEMBERS)[:700])
    (d / "ok.txt").write_text("one two\n")
    script = tmp_path / "wc.py"
    script.write_text("def map(k, v):\n    return [(w, 1) for w in (v.split() if isinstance(v, str) else [])]\n\n"
                      "def reduce(k, vs):\n    return sum(vs)\n")
    res = cli("mapreduce", script, script, d, "--reader", "auto", "--out", tmp_path / "o", "-j", "1", "-R", "1")
    assert res.exit_code == 1 and "d:a.tar: truncated or corrupt tar" in res.stderr
    res = cli("mapreduce", script, script, d, "--reader", "auto", "--skip-bad", "1", "--out", tmp_path / "o",
              "-j", "1", "-R", "1")
    assert res.exit_code == 0, res.stderr
    assert "skipped_records" in res.stderr
    assert (tmp_path / "o" / "part-00000").read_text() == "alpha\t1\nbeta\t1\none\t1\ntwo\t1\n"


def test_damage_is_never_skipped(tmp_path):
    from geryon.disks.checksum import record_files

    d = tmp_path / "d"
    d.mkdir()
    (d / "t.txt").write_text("a b c\n")
    record_files(str(d), ["t.txt"])
    (d / "t.txt").write_text("a b d\n")
    with pytest.raises(JobFailed, match="damaged"):
        geryon.Job(map=_count_lines, reduce=_sum, skip_bad=10).run([str(d)], out=str(tmp_path / "o"), workers=1)


def test_a_file_larger_than_the_budget_is_refused_naming_the_lines_reader(tmp_path, cli):
    d = tmp_path / "d"
    d.mkdir()
    (d / "big.txt").write_text("word " * (300 << 10))  # 1.5 MiB, one record for --reader file
    (d / "small.txt").write_text("one two\n")
    script = tmp_path / "wc.py"
    script.write_text("def map(k, v):\n    return [(w, 1) for w in v.split()]\n\n"
                      "def reduce(k, vs):\n    return sum(vs)\n")
    for reader in ("file", "bytes"):
        res = cli("mapreduce", script, script, d, "--reader", reader, "--sort-budget", "1M", "--out", tmp_path / "o",
                  "-j", "1", "-R", "1")
        assert res.exit_code == 1, res.stderr
        assert res.stderr.strip().splitlines() == [
            "geryon: d:big.txt: 1.5 MiB is too large for one record (the file and bytes readers hold a file whole; "
            "a record may take at most the --sort-budget, 1.0 MiB): use --reader lines, or split the file (geryon load)"
        ], res.stderr
        assert not (tmp_path / "o" / "_SUCCESS").exists()
    res = cli("mapreduce", script, script, d, "--reader", "lines", "--sort-budget", "1M", "--out", tmp_path / "o",
              "-j", "1", "-R", "1")
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "o" / "part-00000").read_text() == f"one\t1\ntwo\t1\nword\t{300 << 10}\n"


def test_a_compressed_file_past_the_budget_is_refused_while_read(tmp_path):
    from geryon.records.badrecords import InputError

    d = tmp_path / "d"
    d.mkdir()
    (d / "big.txt.gz").write_bytes(compress_bytes(b"x" * (3 << 20), "gzip"))  # small on disk
    split = Split("d", (FileRange("/big.txt.gz", 0, (d / "big.txt.gz").stat().st_size),))
    with pytest.raises(InputError, match=r"d:big.txt.gz: more than 1.0 MiB is too large for one record.*--reader lines"):
        list(read_records(ChunkFS(str(d)), split, "file", str(d), max_record=1 << 20))


@pytest.mark.parametrize("block", [1, 5, 64, 4 << 20])
def test_lines_reader_reads_ranges_in_blocks_with_the_same_records(tmp_path, monkeypatch, block):
    from geryon.records import readers

    d = tmp_path / "d"
    d.mkdir()
    text = "".join(f"{'x' * (i % 23)} line {i}\n" for i in range(400)) + "no newline at the end"
    (d / "t.txt").write_text(text)
    size = (d / "t.txt").stat().st_size
    monkeypatch.setattr(readers, "READ_BLOCK", block)  # blocks smaller than a line, and larger than the file
    for cut in (size, 97, 1000):
        ranges = [FileRange("/t.txt", s, min(size, s + cut)) for s in range(0, size, cut)]
        got = [v for r in ranges for _k, v in read_records(ChunkFS(str(d)), Split("d", (r,)), "lines", str(d))]
        assert got == text.split("\n"), (block, cut)
        raw = b"".join(b for r in ranges for b in raw_chunks(ChunkFS(str(d)), Split("d", (r,)), str(d)))
        assert raw == text.encode() + b"\n", (block, cut)


@pytest.mark.parametrize("block", [7, 64, 4 << 20])
@pytest.mark.parametrize("ext", ["txt", "txt.gz"])
def test_lines_reader_skips_bad_lines_in_place_in_every_block(tmp_path, monkeypatch, block, ext):
    """Good lines keep their order around bad ones (reported with their file offsets), whatever
    block a bad line falls in, and with no `on_bad` the first bad line stops the read."""
    from geryon.records import readers

    d = tmp_path / "d"
    d.mkdir()
    raw = [f"line {i} é".encode() if i % 13 else b"bad \xff line %d" % i for i in range(120)]
    data = b"\n".join(raw) + b"\n"
    (d / f"t {ext}").write_bytes(compress_bytes(data, "gzip") if ext.endswith(".gz") else data)
    size = (d / f"t {ext}").stat().st_size
    monkeypatch.setattr(readers, "READ_BLOCK", block)
    want, offsets, pos = [], [], 0
    for line in raw:
        try:
            want.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            want.append(None)
            offsets.append(pos + line.index(b"\xff"))
        pos += len(line) + 1
    got, bad = [], []

    def on_bad(record: BadRecord) -> None:
        got.append(None)
        bad.append(str(record))

    split = Split("d", (FileRange(f"/t {ext}", 0, size),))
    for key, value in read_records(ChunkFS(str(d)), split, "lines", str(d), on_bad=on_bad):
        assert key == f"d/t {ext}"
        got.append(value)
    assert got == want
    assert bad == [f"d:t {ext}: not UTF-8 text (byte {o}); use --reader bytes for binary input" for o in offsets]
    with pytest.raises(BadRecord, match=r"\(byte 4\)"):
        list(read_records(ChunkFS(str(d)), split, "lines", str(d)))
