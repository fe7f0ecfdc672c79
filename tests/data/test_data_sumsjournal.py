"""The checksum manifest's journal (issue 12, item 12): appends, compaction, replay, damage.

Changes to a chunk's manifest are lines appended to `.geryon-sums.log`; the manifest is
written whole only once the journal outgrows it. A reader in another process (a worker)
sees every append; a journal of another manifest, a line cut short by a crash and a
line that does not parse are never applied, and the next change writes the manifest whole.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geryon.disks import checksum
from geryon.disks.checksum import ChecksumMismatch, read_manifest, sum_bytes, update_manifest, write_manifest
from geryon.disks.chunk import SUMS_JOURNAL, SUMS_NAME, create_chunk

REPO = Path(__file__).resolve().parents[2]


def _fresh(tmp_path: Path) -> str:
    root = str(tmp_path / "c")
    create_chunk(root, 64 << 20)
    write_manifest(root, {})
    return root


def _reread(root: str) -> dict:
    """The manifest as a process that never read it before sees it."""
    checksum._CACHE.clear()
    return dict(read_manifest(root) or {})


def test_changes_are_appended_not_rewritten_and_replayed_by_a_fresh_reader(tmp_path: Path) -> None:
    root = _fresh(tmp_path)
    manifest = Path(root, SUMS_NAME)
    stamp = manifest.stat().st_ino, manifest.read_bytes()
    for i in range(200):
        update_manifest(root, {f"/f{i}": sum_bytes(b"x" * i)})
    update_manifest(root, drop=["/f7"])
    update_manifest(root, {"/sub/a": sum_bytes(b"a"), "/sub/b": sum_bytes(b"b")})
    update_manifest(root, drop_under=["/sub"])
    assert (manifest.stat().st_ino, manifest.read_bytes()) == stamp       # never rewritten
    lines = Path(root, SUMS_JOURNAL).read_text().splitlines()
    assert len(lines) == 1 + 203 and json.loads(lines[0]) == {"manifest": json.loads(stamp[1])["journal"]}
    want = {f"/f{i}": sum_bytes(b"x" * i) for i in range(200) if i != 7}
    assert read_manifest(root) == want
    assert _reread(root) == want
    # Another process (a worker reading the chunk) replays the journal the same way.
    code = ("import json, sys; from geryon.disks.checksum import read_manifest\n"
            "m = read_manifest(sys.argv[1]); print(json.dumps({k: v.sha256 for k, v in m.items()}))")
    out = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True, check=True, cwd=REPO)
    assert json.loads(out.stdout) == {k: v.sha256 for k, v in want.items()}


def test_a_reader_sees_appends_made_after_it_read(tmp_path: Path) -> None:
    root = _fresh(tmp_path)
    update_manifest(root, {"/a": sum_bytes(b"a")})
    assert set(read_manifest(root) or {}) == {"/a"}
    # Appended by another writer (as a node process would, the reader being a worker).
    entry = checksum._CACHE[os.path.join(root, SUMS_NAME)]
    with open(Path(root, SUMS_JOURNAL), "ab") as f:
        f.write(json.dumps({"add": {"/b": sum_bytes(b"b").to_json()}, "drop": ["/a"]}).encode() + b"\n")
    assert entry is checksum._CACHE[os.path.join(root, SUMS_NAME)]
    assert set(read_manifest(root) or {}) == {"/b"}


def test_the_journal_is_compacted_once_it_outgrows_the_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checksum, "DEFAULT_COMPACT_BYTES", 4096)
    root = _fresh(tmp_path)
    journal, manifest = Path(root, SUMS_JOURNAL), Path(root, SUMS_NAME)
    rewrites, inode, biggest = 0, manifest.stat().st_ino, 0
    for i in range(400):
        update_manifest(root, {f"/f{i:04d}": sum_bytes(str(i).encode())})
        if manifest.stat().st_ino != inode:
            rewrites, inode = rewrites + 1, manifest.stat().st_ino
        size = journal.stat().st_size if journal.exists() else 0
        biggest = max(biggest, size)
        assert size <= max(4096, manifest.stat().st_size) + 400       # bounded by the manifest, plus a line
    assert 2 <= rewrites <= 12                                         # geometric: linear work in all
    assert _reread(root) == {f"/f{i:04d}": sum_bytes(str(i).encode()) for i in range(400)}


def test_a_journal_of_another_manifest_is_never_applied(tmp_path: Path) -> None:
    """A crash between writing the manifest whole and removing the old journal."""
    root = _fresh(tmp_path)
    update_manifest(root, {"/old": sum_bytes(b"old")})
    stale = Path(root, SUMS_JOURNAL).read_bytes()
    write_manifest(root, {"/new": sum_bytes(b"new")})
    Path(root, SUMS_JOURNAL).write_bytes(stale)                       # left behind by the crash
    assert _reread(root) == {"/new": sum_bytes(b"new")}
    update_manifest(root, {"/more": sum_bytes(b"more")})               # not appended to the stale one
    assert _reread(root) == {"/new": sum_bytes(b"new"), "/more": sum_bytes(b"more")}


def test_a_line_cut_by_a_crash_is_not_applied_and_the_next_change_rewrites(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _fresh(tmp_path)
    update_manifest(root, {"/a": sum_bytes(b"a")})
    line = json.dumps({"add": {"/b": sum_bytes(b"b").to_json()}, "drop": []}).encode()
    with open(Path(root, SUMS_JOURNAL), "ab") as f:
        f.write(line[: len(line) // 2])                                 # killed mid-write
    assert _reread(root) == {"/a": sum_bytes(b"a")}
    with caplog.at_level(logging.WARNING, logger="geryon.disks.checksum"):
        update_manifest(root, {"/c": sum_bytes(b"c")})
    assert "cut or unreadable line" in caplog.text
    assert not Path(root, SUMS_JOURNAL).exists()                       # written whole instead
    assert _reread(root) == {"/a": sum_bytes(b"a"), "/c": sum_bytes(b"c")}


def test_an_unreadable_line_is_ignored_with_a_warning_and_what_follows_too(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _fresh(tmp_path)
    update_manifest(root, {"/a": sum_bytes(b"a")})
    with open(Path(root, SUMS_JOURNAL), "ab") as f:
        f.write(b'{"add": {"/b": garbage\n')
        f.write(json.dumps({"add": {"/c": sum_bytes(b"c").to_json()}}).encode() + b"\n")
    with caplog.at_level(logging.WARNING, logger="geryon.disks.sumsjournal"):
        assert _reread(root) == {"/a": sum_bytes(b"a")}
    assert "unreadable line at byte" in caplog.text and "ignored" in caplog.text
    update_manifest(root, {"/d": sum_bytes(b"d")})
    assert _reread(root) == {"/a": sum_bytes(b"a"), "/d": sum_bytes(b"d")}


def test_a_journal_that_is_a_symbolic_link_is_refused_never_read_or_written(tmp_path: Path) -> None:
    root = _fresh(tmp_path)
    outside = tmp_path / "outside.log"
    outside.write_text('{"manifest": "x"}\n')
    os.symlink(outside, Path(root, SUMS_JOURNAL))
    checksum._CACHE.clear()
    with pytest.raises(ChecksumMismatch, match="symbolic link"):
        read_manifest(root)
    with pytest.raises(ChecksumMismatch, match="symbolic link"):
        update_manifest(root, {"/a": sum_bytes(b"a")})
    assert outside.read_text() == '{"manifest": "x"}\n'
