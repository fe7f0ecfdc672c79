"""Checksums of chunk files: a manifest beside the data, verified on every read.

Each chunk may hold a hidden manifest `.geryon-sums` (JSON) mapping every file written
to it to its size, mtime, SHA-256 and one CRC-32 per 1 MiB block (HDFS keeps per-block
CRCs for the same reason: a reader of a byte range verifies only the blocks it reads).
Reads are verified against it block by block (`geryon.disks.verified`), so damaged data is
never handed to a map function: a mismatch raises `ChecksumMismatch` naming the file and the block.
For replication, `current_sums` tells which files changed since they were recorded (size
and mtime first, like Inferno's updatelog; the bytes only when those differ) and
`update_manifest` changes a manifest's entries: one line appended to its journal per change
(`geryon.disks.sumsjournal`), the manifest written whole now and then. Not here: choosing what to do
about damage (`geryon.disks.failover` reads a replica; the job driver retries elsewhere), reading
through the block CRCs (`geryon.disks.verified`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import stat
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from geryon.records.badrecords import InputError
from geryon.disks.chunk import SUMS_NAME, TEMP_MARK, data_entry, is_internal, within
from geryon.disks.sumsjournal import JournalRefused, JournalState, append_change, journal_path, read_changes

log = logging.getLogger(__name__)

BLOCK = 1 << 20
"""Bytes covered by one CRC-32 of the manifest."""

MANIFEST_VERSION = 1
"""The manifest's format version."""


class ChecksumMismatch(InputError):
    """A chunk file's bytes differ from its recorded checksum: the data is damaged."""


@dataclass(frozen=True)
class FileSum:
    """What the manifest records of one file."""

    size: int
    sha256: str
    crc32: tuple[int, ...]
    mtime_ns: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256, "crc32": list(self.crc32), "mtime_ns": self.mtime_ns}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FileSum":
        return cls(int(data["size"]), str(data["sha256"]), tuple(int(c) for c in data["crc32"]),
                   int(data.get("mtime_ns", 0)))


class Summer:
    """Checksums computed incrementally as bytes are written."""

    def __init__(self, block: int = BLOCK) -> None:
        self._block = block
        self._sha = hashlib.sha256()
        self._crcs: list[int] = []
        self._crc = 0
        self._fill = 0
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self._sha.update(view)
        self.size += len(view)
        while len(view):
            take = min(len(view), self._block - self._fill)
            self._crc = zlib.crc32(view[:take], self._crc)
            self._fill += take
            view = view[take:]
            if self._fill == self._block:
                self._crcs.append(self._crc)
                self._crc, self._fill = 0, 0

    def result(self, mtime_ns: int = 0) -> FileSum:
        crcs = list(self._crcs)
        if self._fill or not crcs:
            crcs.append(self._crc)
        return FileSum(self.size, self._sha.hexdigest(), tuple(crcs), mtime_ns)


def sum_bytes(data: bytes, mtime_ns: int = 0) -> FileSum:
    """The checksums of `data`."""
    s = Summer()
    s.update(data)
    return s.result(mtime_ns)


def sum_file(path: str) -> FileSum:
    """The checksums of the file at `path`, with its mtime."""
    s = Summer()
    with open(path, "rb") as f:
        while True:
            data = f.read(4 * BLOCK)
            if not data:
                break
            s.update(data)
    return s.result(os.stat(path).st_mtime_ns)


def manifest_key(path: str) -> str:
    """A file's key in the manifest: its path in the chunk, with one leading `/`."""
    return "/" + path.replace(os.sep, "/").lstrip("/")


# -- the manifest file ------------------------------------------------------------------------

DEFAULT_COMPACT_BYTES = 1 << 20
"""Journal bytes past which (and past the manifest's own size) the manifest is written whole."""


@dataclass
class _Cached:
    """A manifest as read: its file's stamp and token, its entries, how much journal is applied."""

    stamp: tuple[int, int, int]
    gen: str | None
    files: dict[str, FileSum]
    journal: JournalState = field(default_factory=JournalState)


_CACHE: dict[str, _Cached] = {}


def _load(root: str, path: str) -> _Cached | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise ChecksumMismatch(f"{root}: checksum manifest {SUMS_NAME} is a symbolic link: refused")
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _CACHE.get(path)
    if cached is not None and cached.stamp == stamp:
        return cached
    with open(path, "rb") as f:
        data = json.load(f)
    files = {str(k): FileSum.from_json(v) for k, v in data["files"].items()}
    if int(data.get("block", BLOCK)) != BLOCK:
        raise ValueError(f"block size {data.get('block')} is not {BLOCK}")
    gen = data.get("journal")
    return _Cached(stamp, gen if isinstance(gen, str) else None, files)


def _apply(files: dict[str, FileSum], change: dict[str, Any]) -> None:
    for key in change.get("drop", ()):
        files.pop(str(key), None)
    files.update({str(k): FileSum.from_json(v) for k, v in change.get("add", {}).items()})


def read_manifest(root: str) -> dict[str, FileSum] | None:
    """The manifest of the chunk at `root` (its file, then its journal), or None when it has none.

    Cached while unchanged; journal lines appended since the last read are applied alone.
    The dict returned is shared: copy it before changing it.

    Raises:
        ChecksumMismatch: the manifest itself is unreadable (damaged metadata is damage).
    """
    path = os.path.join(root, SUMS_NAME)
    try:
        for _ in range(3):      # the journal replaced under us: read both again
            cached = _load(root, path)
            if cached is None:
                _CACHE.pop(path, None)
                return None
            changes = read_changes(root, cached.gen, cached.journal)
            if changes is not None:
                break
            _CACHE.pop(path, None)
        else:
            raise ValueError("its journal keeps changing under the reader")
        for change in changes:
            _apply(cached.files, change)
    except JournalRefused as exc:
        _CACHE.pop(path, None)
        raise ChecksumMismatch(f"{root}: checksum journal {exc}") from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        _CACHE.pop(path, None)
        raise ChecksumMismatch(f"{root}: damaged checksum manifest {SUMS_NAME}: {exc}") from exc
    _CACHE[path] = cached
    return cached.files


def write_manifest(root: str, files: dict[str, FileSum]) -> None:
    """Write the manifest of the chunk at `root` whole and atomically (temporary name, then
    rename) under a new token, then drop its journal (stale from that moment on)."""
    path = os.path.join(root, SUMS_NAME)
    gen = secrets.token_hex(8)
    data = {"version": MANIFEST_VERSION, "block": BLOCK, "algorithms": ["sha256", "crc32/block"],
            "journal": gen, "files": {k: files[k].to_json() for k in sorted(files)}}
    tmp = f"{path}{TEMP_MARK}{secrets.token_hex(4)}"
    with open(tmp, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)
    try:
        os.unlink(journal_path(root))
    except FileNotFoundError:
        pass
    st = os.lstat(path)
    _CACHE[path] = _Cached((st.st_ino, st.st_size, st.st_mtime_ns), gen, dict(files))


def record_files(root: str, paths: Iterable[str]) -> None:
    """Compute the checksums of files already in the chunk at `root` and add them to its manifest."""
    files = dict(read_manifest(root) or {})
    for p in paths:
        files[manifest_key(p)] = sum_file(os.path.join(root, p.lstrip("/")))
    write_manifest(root, files)


def manifest_to_json(files: dict[str, FileSum]) -> dict[str, Any]:
    """A manifest as sent over the wire: `{key: {size, sha256, crc32, mtime_ns}}`."""
    return {k: files[k].to_json() for k in sorted(files)}


def manifest_from_json(data: Any, where: str = "manifest") -> dict[str, FileSum]:
    """The inverse of `manifest_to_json`.

    Raises:
        ChecksumMismatch: the data is not a manifest.
    """
    try:
        return {str(k): FileSum.from_json(v) for k, v in dict(data).items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise ChecksumMismatch(f"{where}: damaged checksum manifest: {exc}") from exc


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def _lock_for(root: str) -> threading.Lock:
    with _LOCKS_LOCK:
        return _LOCKS.setdefault(os.path.realpath(root), threading.Lock())


def update_manifest(root: str, add: dict[str, FileSum] | None = None, drop: Iterable[str] = (),
                    drop_under: Iterable[str] = (), create: bool = False) -> bool:
    """Change entries of the chunk's manifest (one thread at a time per chunk); True if changed.

    The change is one line appended to the manifest's journal, so N changes cost N, not
    N squared; the manifest is written whole instead once the journal outgrows it (and
    `DEFAULT_COMPACT_BYTES`), or when the journal cannot be appended to safely.

    Args:
        add: entries to add or replace.
        drop: keys to remove; `drop_under`: directories whose keys are all removed.
        create: make the manifest when the chunk has none (else a chunk without one stays so).
    """
    with _lock_for(root):
        current = read_manifest(root)
        if current is None and not create:
            return False
        added = {manifest_key(k): v for k, v in (add or {}).items()}
        dropped = [manifest_key(k) for k in drop]
        for d in drop_under:
            prefix = manifest_key(d).rstrip("/") + "/"
            dropped += [k for k in (current or {}) if k.startswith(prefix)]
        cached = _CACHE.get(os.path.join(root, SUMS_NAME))
        if current is not None and cached is not None and cached.gen is not None \
                and cached.journal.size < max(DEFAULT_COMPACT_BYTES, cached.stamp[1]):
            change = {"add": {k: v.to_json() for k, v in added.items()}, "drop": dropped}
            if append_change(root, cached.gen, change, cached.journal):
                _apply(cached.files, change)
                return True
            if cached.journal.size != cached.journal.offset or cached.journal.damaged:
                log.warning("%s: checksum journal ends in a cut or unreadable line (a crash mid-write?): "
                            "manifest written whole", root)
        files = dict(current or {})
        for key in dropped:
            files.pop(key, None)
        files.update(added)
        write_manifest(root, files)
        return True


class FileState(str, Enum):
    """How a file stands against its manifest entry (`current_sums`)."""

    OK = "ok"              # size and mtime as recorded: the recorded sums are trusted
    TOUCHED = "touched"    # size or mtime differ, the bytes do not
    CHANGED = "changed"    # the bytes differ from the record: changed outside Geryon, or damaged
    NEW = "new"            # no entry


def current_sums(root: str, trust_stat: bool = True) -> tuple[dict[str, FileSum], dict[str, FileState], list[str]]:
    """Every data file's checksums as it is now, and how it stands against the manifest.

    A file whose size and mtime match its entry is not read (updatelog's quick check;
    `trust_stat=False` reads every file, finding damage that left both alone); any other
    is read and summed. Returns (sums, states, missing), `missing` being keys
    the manifest records that are gone from the disk.

    Raises:
        ChecksumMismatch: the manifest itself is damaged.
    """
    recorded = read_manifest(root) or {}
    sums: dict[str, FileSum] = {}
    states: dict[str, FileState] = {}
    for key in _files_of(root):
        full = os.path.join(root, key.lstrip("/"))
        try:
            st = os.stat(full)
        except FileNotFoundError:
            continue
        rec = recorded.get(key)
        if trust_stat and rec is not None and rec.size == st.st_size and rec.mtime_ns == st.st_mtime_ns:
            sums[key], states[key] = rec, FileState.OK
            continue
        try:
            now = sum_file(full)
        except FileNotFoundError:
            continue
        sums[key] = now
        if rec is None:
            states[key] = FileState.NEW
        elif (rec.size, rec.sha256) == (now.size, now.sha256):
            states[key] = FileState.TOUCHED
        else:
            states[key] = FileState.CHANGED
    missing = sorted(set(recorded) - set(sums))
    return sums, states, missing


# -- checking a whole disk --------------------------------------------------------------------

@dataclass
class CheckReport:
    """What `check_disk` found."""

    root: str
    verified: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (path, what is wrong)
    unrecorded: list[str] = field(default_factory=list)
    has_manifest: bool = True

    @property
    def ok(self) -> bool:
        return not self.damaged


def _files_of(root: str) -> Iterator[str]:
    """Every data file of the disk at `root`: symbolic links out of it are skipped
    (`chunk.data_entry`), links to directories not walked into."""
    real_root = os.path.realpath(root)
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            if is_internal(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif data_entry(real_root, entry) is not None:
                yield manifest_key(os.path.relpath(entry.path, root))


def _contained(root: str, full: str) -> bool:
    return within(os.path.realpath(root), full)


def check_file(root: str, key: str, expected: FileSum) -> str | None:
    """What is wrong with one recorded file, or None when it matches."""
    full = os.path.join(root, key.lstrip("/"))
    if not _contained(root, full):
        return "a symbolic link out of the disk now (not read)"
    try:
        actual = sum_file(full)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable: {exc}"
    if actual.size != expected.size:
        return f"size {actual.size}, {expected.size} recorded"
    if actual.sha256 != expected.sha256 or actual.crc32 != expected.crc32:
        bad = [i for i, (a, e) in enumerate(zip(actual.crc32, expected.crc32)) if a != e]
        where = f" in block(s) {', '.join(map(str, bad[:5]))}" if bad else ""
        modified = " (modified after it was recorded)" if actual.mtime_ns != expected.mtime_ns else ""
        return f"checksum mismatch{where}{modified}"
    return None


def check_disk(root: str) -> CheckReport:
    """Verify every file the chunk's manifest records; list the files it does not."""
    report = CheckReport(root)
    manifest = read_manifest(root)
    if manifest is None:
        report.has_manifest = False
        report.unrecorded = sorted(_files_of(root))
        return report
    for key in sorted(manifest):
        problem = check_file(root, key, manifest[key])
        if problem:
            report.damaged.append((key, problem))
        else:
            report.verified += 1
    report.unrecorded = sorted(set(_files_of(root)) - set(manifest))
    return report
