"""Checksums: every loaded file is recorded; damage is found by `check` and stops a job."""
from __future__ import annotations

import json
import os
import pathlib

import pytest

import geryon
from geryon.disks.checksum import ChecksumMismatch, check_disk, read_manifest, record_files, sum_bytes
from geryon.disks.chunk import SUMS_NAME, ChunkFS, create_chunk
from geryon.errors import JobFailed
from geryon.ingest.load import load
from geryon.records.readers import raw_chunks, read_records
from geryon.records.split import list_files, list_local_files, plan_splits


def _flip(path: pathlib.Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x20]))


@pytest.fixture
def loaded(corpus, tmp_path):
    return load([str(corpus)], "sums", chunk_size=512 << 10, to=str(tmp_path / "disks"),
                ndb_file=str(tmp_path / "ndb"))


def test_every_loaded_file_is_recorded_and_the_manifest_is_hidden(loaded, data_files):
    for d in loaded.disks:
        manifest = read_manifest(d.path)
        files = data_files(pathlib.Path(d.path))
        assert sorted(manifest) == sorted("/" + p.relative_to(d.path).as_posix() for p in files)
        for p in files:
            s = manifest["/" + p.relative_to(d.path).as_posix()]
            assert (s.size, s.sha256) == (sum_bytes(p.read_bytes()).size, sum_bytes(p.read_bytes()).sha256)
        assert SUMS_NAME not in [p for p, _ in list_local_files(d.path)]
        assert SUMS_NAME not in ChunkFS(d.path).listdir("/")
        report = check_disk(d.path)
        assert report.ok and report.verified == len(files) and report.unrecorded == []


def test_flipped_byte_is_named_by_check_and_fails_the_job(loaded, tmp_path, check_cli, wordcount, data_files):
    disk = pathlib.Path(loaded.disks[1].path)
    victim = data_files(disk)[3]
    _flip(victim, victim.stat().st_size // 2)
    rel = victim.relative_to(disk).as_posix()
    res = check_cli(*[d.path for d in loaded.disks])
    assert res.exit_code == 1
    assert res.stdout.strip() == f"{disk.name}:{rel}: checksum mismatch in block(s) 0 (modified after it was recorded)"
    with pytest.raises(JobFailed, match=rf"{disk.name}:{rel}: damaged: checksum mismatch"):
        wordcount([d.path for d in loaded.disks])
    out = tmp_path / "wc-out-0"
    assert not [p for p in out.iterdir() if p.name.startswith("part-")] if out.exists() else True


def test_damage_through_the_mapreduce_cli_is_one_clear_line(loaded, tmp_path, cli, data_files):
    disk = pathlib.Path(loaded.disks[0].path)
    victim = data_files(disk)[0]
    _flip(victim, 0)
    script = tmp_path / "wc.py"
    script.write_text("def map(k, v):\n    return [(w, 1) for w in v.split()]\n\n"
                      "def reduce(k, vs):\n    return sum(vs)\n")
    res = cli("mapreduce", script, script, disk, "--out", tmp_path / "o", "-q", "-j", "1")
    assert res.exit_code == 1
    assert "damaged: checksum mismatch" in res.stderr and victim.name in res.stderr
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("part-*"))


def test_ranges_of_a_large_file_are_verified_block_by_block(tmp_path):
    root = tmp_path / "c"
    create_chunk(str(root), 64 << 20)
    lines = [f"line {i} " + "x" * (i % 50) for i in range(120_000)]
    (root / "big.txt").write_text("\n".join(lines) + "\n")
    record_files(str(root), ["big.txt"])
    disk = ChunkFS(str(root))
    splits = plan_splits("c", list_files(disk), 700_000, cut_files=True)
    assert len(splits) > 3
    got = [v for s in splits for _k, v in read_records(disk, s, "lines", str(root))]
    assert got == lines
    assert b"".join(b for s in splits for b in raw_chunks(disk, s, str(root))) == (root / "big.txt").read_bytes()
    size = (root / "big.txt").stat().st_size
    _flip(root / "big.txt", size - 10)  # the last block only
    assert [v for _k, v in read_records(disk, splits[0], "lines", str(root))] == got[:len(
        [v for _k, v in read_records(disk, splits[0], "lines", str(root))])]
    with pytest.raises(ChecksumMismatch, match=r"c:big.txt: damaged: checksum mismatch in bytes \d+-\d+ \(block \d+\)"):
        for s in splits:
            list(read_records(disk, s, "lines", str(root)))
    disk.close()


def test_truncated_file_and_missing_file_are_damage(tmp_path, check_cli):
    root = tmp_path / "c"
    create_chunk(str(root), 1 << 20)
    (root / "a.txt").write_text("alpha\n")
    (root / "b.txt").write_text("beta\n")
    record_files(str(root), ["a.txt", "b.txt"])
    (root / "extra.txt").write_text("not recorded\n")
    with open(root / "a.txt", "r+b") as f:
        f.truncate(3)
    os.unlink(root / "b.txt")
    res = check_cli(root)
    assert res.exit_code == 1
    assert res.stdout.splitlines() == ["c:a.txt: size 3, 6 recorded", "c:b.txt: missing"]
    assert "1 files have no recorded checksum" in res.stderr
    disk = ChunkFS(str(root))
    from geryon.records.split import FileRange, Split

    with pytest.raises(ChecksumMismatch, match="c:a.txt: damaged: 3 bytes, 6 recorded"):
        list(read_records(disk, Split("c", (FileRange("/a.txt", 0, 3),)), "file", str(root)))
    disk.close()


def test_damaged_manifest_is_damage(tmp_path, check_cli):
    root = tmp_path / "c"
    create_chunk(str(root), 1 << 20)
    (root / "a.txt").write_text("alpha\n")
    record_files(str(root), ["a.txt"])
    json.loads((root / SUMS_NAME).read_text())
    (root / SUMS_NAME).write_text("{not json")
    res = check_cli(root)
    assert res.exit_code == 1 and "damaged checksum manifest" in res.stdout


def test_disk_without_manifest_checks_clean_and_reads_unverified(tmp_path, check_cli, wordcount):
    d = tmp_path / "plain"
    d.mkdir()
    (d / "a.txt").write_text("one two two\n")
    res = check_cli(d)
    assert res.exit_code == 0 and "no checksum manifest" in res.stderr
    assert wordcount([d]) == {"one": 1, "two": 2}
    assert geryon.Job  # the API stays importable with the new modules
