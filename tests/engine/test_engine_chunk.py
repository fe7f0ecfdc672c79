"""Chunk disks: the capacity holds through every write path of the fs API, and a refused
write (DiskFull) leaves neither a partial file nor a temporary one, and old content intact."""
from __future__ import annotations

import io
import os
import pathlib

import fs.copy
import fs.errors
import fs.memoryfs
import pytest

from geryon import DiskFull
from geryon.disks.chunk import META_NAME, TEMP_MARK, ChunkFS

CAP = 4096


@pytest.fixture
def chunk(cli, tmp_path: pathlib.Path) -> ChunkFS:
    path = tmp_path / "chunk"
    res = cli("disk", "new", path, "--size", "4k")
    assert res.exit_code == 0, res.stderr
    with ChunkFS(str(path)) as c:
        assert c.capacity == CAP
        yield c


def _raw_names(c: ChunkFS) -> list[str]:
    return sorted(n for _d, _s, files in os.walk(c.root_path) for n in files)


def _assert_clean(c: ChunkFS, expected: dict[str, bytes]) -> None:
    """Exactly `expected` (path -> bytes) is on the chunk, plus its metadata file."""
    names = _raw_names(c)
    assert not [n for n in names if TEMP_MARK in n], names
    assert sorted(n for n in names if n != META_NAME) == sorted(os.path.basename(p) for p in expected)
    for path, data in expected.items():
        assert c.readbytes(path) == data
    assert c.used() == sum(len(d) for d in expected.values()) <= CAP


def test_writes_up_to_capacity_succeed(chunk):
    chunk.writebytes("a", b"x" * 3000)
    chunk.writebytes("b", b"y" * (CAP - 3000))
    assert chunk.free() == 0
    _assert_clean(chunk, {"a": b"x" * 3000, "b": b"y" * (CAP - 3000)})
    assert sorted(chunk.listdir("/")) == ["a", "b"]


def test_writebytes_past_capacity(chunk):
    chunk.writebytes("keep", b"k" * 1000)
    with pytest.raises(DiskFull):
        chunk.writebytes("new", b"n" * (CAP - 999))
    _assert_clean(chunk, {"keep": b"k" * 1000})


def test_overwrite_past_capacity_keeps_old_content(chunk):
    chunk.writebytes("f", b"old" * 100)
    with pytest.raises(DiskFull):
        chunk.writebytes("f", b"z" * (CAP + 1))
    _assert_clean(chunk, {"f": b"old" * 100})


def test_text_open_w_past_capacity(chunk):
    chunk.writetext("doc.txt", "first version\n")
    with pytest.raises(DiskFull):
        with chunk.open("doc.txt", "w", encoding="utf-8") as f:
            for _ in range(100):
                f.write("é" * 50 + "\n")
    _assert_clean(chunk, {"doc.txt": b"first version\n"})


def test_binary_open_many_small_writes(chunk):
    with pytest.raises(DiskFull):
        with chunk.openbin("stream.bin", "w") as f:
            for _ in range(CAP):
                f.write(b"ab")
    _assert_clean(chunk, {})


def test_upload_past_capacity(chunk):
    chunk.writebytes("small", b"s" * 10)
    with pytest.raises(DiskFull):
        chunk.upload("up.bin", io.BytesIO(b"u" * (CAP * 2)))
    _assert_clean(chunk, {"small": b"s" * 10})
    chunk.upload("up.bin", io.BytesIO(b"u" * 100))
    _assert_clean(chunk, {"small": b"s" * 10, "up.bin": b"u" * 100})


def test_copy_inside_the_chunk_past_capacity(chunk):
    chunk.writebytes("src", b"c" * 3000)
    with pytest.raises(DiskFull):
        chunk.copy("src", "dst")
    _assert_clean(chunk, {"src": b"c" * 3000})


def test_copy_from_another_filesystem_past_capacity(chunk):
    mem = fs.memoryfs.MemoryFS()
    mem.writebytes("big", b"m" * (CAP + 10))
    mem.writebytes("fits", b"f" * 100)
    with pytest.raises(DiskFull):
        fs.copy.copy_file(mem, "big", chunk, "big")
    fs.copy.copy_file(mem, "fits", chunk, "fits")
    _assert_clean(chunk, {"fits": b"f" * 100})


def test_append_past_capacity_keeps_content(chunk):
    chunk.writebytes("log", b"l" * 2000)
    with pytest.raises(DiskFull):
        with chunk.openbin("log", "a") as f:
            f.write(b"m" * 3000)
    _assert_clean(chunk, {"log": b"l" * 2000})


def test_subdirectories_count(chunk):
    chunk.makedirs("a/b")
    chunk.writebytes("a/b/deep", b"d" * 4000)
    with pytest.raises(DiskFull):
        chunk.writebytes("top", b"t" * 200)
    _assert_clean(chunk, {"a/b/deep": b"d" * 4000})


def test_removing_frees_space(chunk):
    chunk.writebytes("a", b"a" * 4000)
    with pytest.raises(DiskFull):
        chunk.writebytes("b", b"b" * 1000)
    chunk.remove("a")
    chunk.writebytes("b", b"b" * 4000)
    _assert_clean(chunk, {"b": b"b" * 4000})


def test_two_handles_on_one_chunk_share_the_capacity(chunk):
    """Two writers of one chunk (two reduce tasks writing the same --out) share its capacity."""
    other = ChunkFS(chunk.root_path)
    chunk.writebytes("a", b"a" * 100)  # both handles have looked at the chunk
    other.writebytes("b", b"b" * 100)
    other.writebytes("c", b"c" * 3000)
    with pytest.raises(DiskFull):
        chunk.writebytes("d", b"d" * 2000)  # 100 + 100 + 3000 + 2000 > 4096
    assert chunk.used() <= CAP
    other.close()


def test_metadata_is_hidden_and_read_only(chunk):
    assert META_NAME not in chunk.listdir("/")
    with pytest.raises(fs.errors.ResourceReadOnly):
        chunk.writebytes(META_NAME, b"{}")
    assert ChunkFS(chunk.root_path).capacity == CAP


# -- the CLI -----------------------------------------------------------------------------------

def test_disk_new_twice_fails(cli, tmp_path):
    path = tmp_path / "c"
    assert cli("disk", "new", path, "--size", "64M").exit_code == 0
    res = cli("disk", "new", path, "--size", "1M")
    assert res.exit_code == 1
    assert res.stderr.startswith("geryon: ") and "already" in res.stderr and str(path) in res.stderr
    assert ChunkFS(str(path)).capacity == 64 << 20  # the first capacity stands


def test_disk_info(cli, tmp_path):
    path = tmp_path / "c"
    assert cli("disk", "new", path, "--size", "4k").exit_code == 0
    ChunkFS(str(path)).writebytes("f", b"x" * 96)
    res = cli("disk", "info", path)
    assert res.exit_code == 0
    assert res.stdout.strip() == f"{path} capacity 4096 used 96 free 4000"


@pytest.mark.parametrize("size", ["0", "-1", "lots"])
def test_disk_new_bad_size_is_a_usage_error(cli, tmp_path, size):
    res = cli("disk", "new", tmp_path / "c", "--size", size)
    assert res.exit_code == 2
    assert not (tmp_path / "c").exists()
