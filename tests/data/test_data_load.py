"""geryon load: text as a directory, a tar.xz and a .gz, packed into chunks at record boundaries."""
from __future__ import annotations

import gzip
import io
import lzma
import os
import pathlib
import tarfile
from collections import Counter

import pytest

import ndb
from geryon.disks.checksum import check_disk
from geryon.disks.chunk import read_capacity
from geryon.disks.resolve import resolve
from geryon.errors import GeryonError
from geryon.ingest.load import RecordTooLarge, load

CHUNK = 256 << 10


def _sizes(disks) -> list[int]:
    return [d.nbytes for d in disks]


def _check_chunks(report, data_files, chunk=CHUNK) -> None:
    assert len(report.disks) >= 2
    for d in report.disks:
        files = data_files(pathlib.Path(d.path))
        size = sum(p.stat().st_size for p in files)
        assert size == d.nbytes <= chunk
        assert read_capacity(d.path) == chunk


def test_directory_loads_into_chunks_and_counts_the_same(corpus, corpus_counts, tmp_path, data_files, wordcount):
    report = load([str(corpus)], "src", chunk_size=CHUNK, to=str(tmp_path / "disks"),
                  ndb_file=str(tmp_path / "ndb" / "cluster"))
    _check_chunks(report, data_files)
    # whole files: every source file is in exactly one chunk, byte for byte
    stored = {p.relative_to(d.path).as_posix(): p.read_bytes()
              for d in report.disks for p in data_files(pathlib.Path(d.path))}
    source = {p.relative_to(corpus).as_posix(): p.read_bytes() for p in corpus.rglob("*") if p.is_file()}
    assert stored == source
    names = [d.name for d in report.disks]
    assert names == [f"d{i}.src" for i in range(len(names))]
    assert wordcount(names, ndb=str(tmp_path / "ndb" / "cluster")) == corpus_counts


def _tar_of(corpus: pathlib.Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(str(corpus), arcname="stdlib")
    return buf.getvalue()


def test_tar_xz_loads_members_as_files(corpus, corpus_counts, tmp_path, data_files, wordcount):
    archive = tmp_path / "stdlib.tar.xz"
    archive.write_bytes(lzma.compress(_tar_of(corpus), preset=0))
    report = load([str(archive)], "tarred", chunk_size=CHUNK, to=str(tmp_path / "disks"),
                  ndb_file=str(tmp_path / "ndb"))
    _check_chunks(report, data_files)
    members = sorted(p.relative_to(d.path).as_posix() for d in report.disks for p in data_files(pathlib.Path(d.path)))
    assert members == sorted(f"stdlib/{p.relative_to(corpus).as_posix()}" for p in corpus.rglob("*") if p.is_file())
    assert wordcount([d.path for d in report.disks]) == corpus_counts


def test_gz_text_is_cut_at_lines(corpus, corpus_counts, tmp_path, data_files, wordcount):
    text = b"".join(p.read_bytes() for p in sorted(corpus.rglob("*")) if p.is_file())
    src = tmp_path / "all.txt.gz"
    src.write_bytes(gzip.compress(text, compresslevel=1))
    report = load([str(src)], "lines", chunk_size=CHUNK, to=str(tmp_path / "disks"),
                  ndb_file=str(tmp_path / "ndb"))
    _check_chunks(report, data_files)
    pieces = [pathlib.Path(d.path, "all.txt").read_bytes() for d in report.disks]
    assert all(p.endswith(b"\n") for p in pieces[:-1])  # no line split across chunks
    assert b"".join(pieces) == text
    assert wordcount([d.path for d in report.disks]) == corpus_counts
    assert wordcount([d.path for d in report.disks], reader="lines") == corpus_counts


def test_every_compression_loads_the_same_text(tmp_path):
    from geryon.records.compression import compress_bytes

    text = b"".join(b"line %d of the text\n" % i for i in range(5000))
    for codec, ext in (("gzip", "gz"), ("bz2", "bz2"), ("xz", "xz"), ("zstd", "zst")):
        src = tmp_path / f"t.txt.{ext}"
        src.write_bytes(compress_bytes(text, codec))
        report = load([str(src)], f"t{ext}", chunk_size=16 << 10, to=str(tmp_path / "disks"),
                      ndb_file=str(tmp_path / "ndb"))
        assert b"".join(pathlib.Path(d.path, "t.txt").read_bytes() for d in report.disks) == text, codec


def test_record_larger_than_the_chunk_is_an_error_naming_it(tmp_path):
    src = tmp_path / "big.txt"
    src.write_bytes(b"short\n" + b"x" * 5000 + b"\nshort again\n")
    with pytest.raises(RecordTooLarge, match=r"big\.txt.*5001|5001.*big\.txt"):
        load([str(src)], "big", chunk_size=4096, to=str(tmp_path / "disks"), ndb_file=str(tmp_path / "ndb"))
    assert not (tmp_path / "disks" / "d0.big").exists()  # nothing kept
    d = tmp_path / "dir"
    d.mkdir()
    (d / "huge.bin").write_bytes(bytes(10000))
    with pytest.raises(RecordTooLarge, match="huge.bin"):
        load([str(d)], "big", chunk_size=4096, to=str(tmp_path / "disks"), ndb_file=str(tmp_path / "ndb"))


def test_ndb_names_disks_and_replicas_and_reload_replaces_them(corpus, tmp_path, data_files, check_cli):
    db = tmp_path / "ndb" / "cluster"
    db.parent.mkdir()
    db.write_text("# my cluster\nname=other kfs\n\tpath=/elsewhere\n")
    disks = tmp_path / "disks"
    report = load([str(corpus)], "src", chunk_size=CHUNK, replicas=2, to=str(disks), ndb_file=str(db))
    entries = ndb.open(str(db))
    assert db.read_text().startswith("# my cluster\nname=other kfs\n\tpath=/elsewhere\n")
    for d in report.disks:
        (entry,) = entries.find("name", d.name)
        assert entry.get("master") == f"local!{d.name}"
        assert entry.get("replica") == f"{d.name}.r1"
        assert resolve(d.name, str(db)).path == str(disks / d.name)
        replica = resolve(f"{d.name}.r1", str(db))
        assert replica.path == str(disks / "replicas" / f"{d.name}.r1")
        assert [p.read_bytes() for p in data_files(pathlib.Path(replica.path))] == \
               [p.read_bytes() for p in data_files(pathlib.Path(d.path))]
        assert check_disk(replica.path).ok and check_disk(d.path).ok
    res = check_cli(*[d.name for d in report.disks], f"{report.disks[0].name}.r1", "--ndb", db)
    assert res.exit_code == 0 and res.stdout == "", res.output
    first = len(report.disks)
    # a reload with bigger chunks replaces every old disk of the app, and only those
    report2 = load([str(corpus)], "src", chunk_size=4 * CHUNK, to=str(disks), ndb_file=str(db))
    assert len(report2.disks) < first
    names = sorted(e.get("name") for e in ndb.open(str(db)).entries)
    assert names == sorted(["other"] + [d.name for d in report2.disks])
    assert sorted(os.listdir(disks)) == sorted([d.name for d in report2.disks] + ["replicas"])
    assert os.listdir(disks / "replicas") == []


def test_load_cli_prints_the_disks(corpus, tmp_path, load_cli):
    res = load_cli(corpus, "--app", "cli", "--chunk", "512k", "--to", tmp_path / "d", "--ndb", tmp_path / "db")
    assert res.exit_code == 0, res.stderr
    names = res.stdout.split()
    assert names and names == [f"d{i}.cli" for i in range(len(names))]
    assert "made d0.cli" in res.stderr and "MB/s" in res.stderr
    res = load_cli(tmp_path / "missing", "--app", "x", "--to", tmp_path / "d", "--ndb", tmp_path / "db")
    assert res.exit_code == 1 and "missing" in res.stderr


def test_load_refuses_bad_app_names_and_empty_sources(tmp_path):
    with pytest.raises(GeryonError, match="bad app name"):
        load([str(tmp_path)], "../x", to=str(tmp_path / "d"), ndb_file=str(tmp_path / "db"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GeryonError, match="nothing to load"):
        load([str(empty)], "e", to=str(tmp_path / "d"), ndb_file=str(tmp_path / "db"))


def test_placement_spreads_copies_over_hosts():
    from geryon.disks.placement import ChunkSlot, NoRoom, place

    slots = [ChunkSlot("a", "/a/0", 100), ChunkSlot("a", "/a/1", 500), ChunkSlot("b", "/b/0", 200),
             ChunkSlot("c", "/c/0", 10)]
    assert [s.path for s in place(50, slots, 2)] == ["/a/1", "/b/0"]
    assert [s.host for s in place(50, slots, 3)] == ["a", "b", "a"]  # c has no room
    assert [s.path for s in place(50, [ChunkSlot("l", "/r", 1000)], 3)] == ["/r"] * 3
    with pytest.raises(NoRoom):
        place(300, slots, 2)
    assert Counter(s.host for s in place(10, slots, 3)) == Counter("abc")


def test_loading_a_directory_that_holds_the_disks_and_chunk_metadata(corpus, tmp_path, monkeypatch, data_files):
    """`geryon load . --app x` in a directory: the disks being made and the ndb file are not loaded,
    and a chunk disk as a source gives its files, not its metadata."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_text("alpha\n")
    monkeypatch.chdir(work)
    first = load(["."], "self", chunk_size=CHUNK)
    assert [p.name for p in data_files(pathlib.Path(first.disks[0].path))] == ["a.txt"]
    again = load(["."], "self", chunk_size=CHUNK)  # disks/ and ndb/ now exist beside a.txt
    assert [p.name for p in data_files(pathlib.Path(again.disks[0].path))] == ["a.txt"]
    copy = load([again.disks[0].path], "copy", chunk_size=CHUNK)
    assert [p.name for p in data_files(pathlib.Path(copy.disks[0].path))] == ["a.txt"]
    assert check_disk(copy.disks[0].path).ok


def test_a_local_load_writes_empty_and_small_files_and_its_manifest_holds_what_is_on_disk(tmp_path):
    src = tmp_path / "my files"
    (src / "sub dir").mkdir(parents=True)
    (src / "sub dir" / "empty one").write_bytes(b"")
    (src / "small.txt").write_bytes(b"a line\n")
    (src / "sub dir" / "other.txt").write_bytes(b"x" * 5000)
    report = load([str(src)], "e", chunk_size=CHUNK, to=str(tmp_path / "out disks"),
                  ndb_file=str(tmp_path / "ndb" / "cluster"))
    chunk = pathlib.Path(report.disks[0].path)
    assert (chunk / "sub dir" / "empty one").read_bytes() == b""
    assert (chunk / "small.txt").read_bytes() == b"a line\n"
    assert (chunk / "sub dir" / "other.txt").read_bytes() == b"x" * 5000
    checked = check_disk(str(chunk))
    assert checked.verified == 3 and not checked.damaged and not checked.unrecorded, checked
