"""A chunk disk: a directory with a capacity, as an `fs` filesystem (pyfilesystem2 API).

Geryon's storage unit (the seed's 64 MB chunk). Writes that would take the chunk past its
capacity fail with `DiskFull` and leave nothing behind: files opened for writing are written
under a temporary name and renamed into place when closed. The capacity lives in a small
metadata file at the chunk's root, hidden from listings. Not here: naming disks (see
`geryon.disks.resolve`), serving chunks over the network (the node daemon), the file being
written (`geryon.disks.chunkwriter`).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from fs import errors as fserrors
from fs.base import FS
from fs.mode import Mode
from fs.osfs import OSFS

from geryon.disks.chunkwriter import ChunkWriter
from geryon.errors import DiskFull, GeryonError
from geryon.defaults import DEFAULT_CAPACITY

log = logging.getLogger(__name__)

META_NAME = ".geryon-disk"
"""The chunk's metadata file (JSON: capacity), at its root and hidden from listings."""

TEMP_MARK = ".geryon-tmp-"
"""Infix of files being written; they are hidden and removed when a write fails."""

SUMS_NAME = ".geryon-sums"
"""The chunk's checksum manifest (see `geryon.disks.checksum`), at its root and hidden from listings."""

SUMS_JOURNAL = ".geryon-sums.log"
"""Entries added to the manifest since it was last written whole (one JSON line per change)."""


TRASH_NAME = f"{TEMP_MARK}trash"
"""A chunk's hidden trash: what emptying the chunk moved away, being deleted by its node
(`geryon.node.trash`). Not data: walks, listings and sums skip it."""

CLAIM_NAME = ".geryon-claim"
"""A chunk claimed by a load still under way (JSON: `until`, wall-clock seconds); at its
root, hidden from listings. Its node reclaims the chunk once `until` has passed."""


def is_internal(name: str) -> bool:
    """Whether a file name is Geryon's own bookkeeping rather than user data."""
    return name in (META_NAME, SUMS_NAME, SUMS_JOURNAL, CLAIM_NAME) or TEMP_MARK in name


class OutsideDisk(fserrors.ResourceNotFound):
    """A path that resolves outside its disk (through a symbolic link): treated as absent."""

    default_message = "path '{path}' leads outside the disk (a symbolic link out): refused"


def within(real_root: str, path: str) -> bool:
    """Whether `path`, every symbolic link resolved, stays inside the directory `real_root`
    (itself a resolved path)."""
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def data_entry(real_root: str, entry: os.DirEntry[str]) -> os.stat_result | None:
    """The stat of a directory entry that is a regular data file of the disk, or None.

    A symbolic link counts as the file it points to when that file is inside the disk;
    one pointing outside (or nowhere) is skipped, with a line in the log saying so.
    Directories are never data files, and links to them are not walked into: each file
    is met once, at its own place.
    """
    try:
        if not entry.is_symlink():
            return entry.stat() if entry.is_file(follow_symlinks=False) else None
        if not within(real_root, entry.path):
            log.info("skipping %s: a symbolic link out of its disk", entry.path)
            return None
        st = os.stat(entry.path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def describe_size(nbytes: int) -> str:
    """A size for messages: 1.0 GiB, 300 MiB."""
    if nbytes >= 1 << 30:
        return f"{nbytes / (1 << 30):.1f} GiB"
    if nbytes < 10 << 20:
        return f"{nbytes / (1 << 20):.1f} MiB"
    return f"{round(nbytes / (1 << 20))} MiB"


def parse_size(text: str) -> int:
    """Parse a size such as `64M`, `1G`, `512k` or `1000` into bytes (binary units)."""
    units = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("IB").removesuffix("B") if len(text.strip()) > 1 else text.strip()
    num, unit = t, ""
    if t and t[-1] in units and not t[-1].isdigit():
        num, unit = t[:-1], t[-1]
    try:
        value = float(num)
    except ValueError:
        raise ValueError(f"bad size {text!r} (examples: 64M, 1G, 4096)") from None
    if value <= 0:
        raise ValueError(f"bad size {text!r}: must be positive")
    return int(value * units[unit])


def create_chunk(path: str, capacity: int = DEFAULT_CAPACITY) -> "ChunkFS":
    """Make a new chunk disk at `path` (the directory may exist but must hold no chunk)."""
    if capacity <= 0:
        raise GeryonError(f"{path}: capacity must be positive")
    os.makedirs(path, exist_ok=True)
    meta = os.path.join(path, META_NAME)
    if os.path.exists(meta):
        raise GeryonError(f"{path}: already a chunk disk")
    _write_meta(meta, {"capacity": capacity})
    return ChunkFS(path)


def _write_meta(meta: str, data: dict) -> None:
    tmp = f"{meta}{TEMP_MARK}{secrets.token_hex(4)}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, meta)


def walk_size(root: str) -> int:
    """Bytes in the files below `root`, but for the chunk's own metadata file and its trash."""
    total = 0
    for dirpath, dirs, files in os.walk(root):
        if TRASH_NAME in dirs:
            dirs.remove(TRASH_NAME)
        for name in files:
            if name in (META_NAME, SUMS_NAME, SUMS_JOURNAL, CLAIM_NAME):  # bookkeeping, not data
                continue
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


def _read_meta_fd(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        meta = json.loads(data or b"{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _write_meta_fd(fd: int, meta: dict) -> None:
    data = json.dumps(meta).encode()
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, data)


def read_capacity(path: str) -> int | None:
    """The capacity of the chunk at `path`, or None when `path` is a plain directory."""
    try:
        fd = os.open(os.path.join(path, META_NAME), os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # writers rewrite it in place under LOCK_EX
        meta = _read_meta_fd(fd)
    finally:
        os.close(fd)
    try:
        return int(meta["capacity"])
    except (ValueError, KeyError, TypeError) as exc:
        raise GeryonError(f"{path}: damaged chunk metadata {META_NAME}: no capacity") from exc


class ChunkFS(OSFS):
    """An OSFS whose total size is bounded by the chunk's capacity.

    A plain directory (no metadata file) opens with no capacity limit, so any directory can
    serve as an input disk.
    """

    def __init__(self, root: str, capacity: int | None = None, create: bool = False) -> None:
        if create:
            os.makedirs(root, exist_ok=True)
        try:
            super().__init__(root)
        except fserrors.CreateFailed as exc:
            raise GeryonError(f"{root}: no such disk directory") from exc
        self.capacity = capacity if capacity is not None else read_capacity(self.root_path)
        self._meta_path = os.path.join(self.root_path, META_NAME)
        self.real_root = os.path.realpath(self.root_path)

    def __repr__(self) -> str:
        return f"ChunkFS({self.root_path!r}, capacity={self.capacity})"

    # -- space accounting -----------------------------------------------------------
    def used(self) -> int:
        """Bytes held by files in the chunk, counted afresh from the disk."""
        return walk_size(self.root_path)

    def account(self, nbytes: int, path: str) -> None:
        """Count `nbytes` already written around this class (a map output) against the capacity.

        Raises:
            DiskFull: they do not fit; the caller removes what it wrote.
        """
        if self.capacity is None or nbytes <= 0:
            return
        with self._locked() as fd:
            meta = _read_meta_fd(fd)
            used = meta.get("used")
            total = used + nbytes if isinstance(used, int) else None
            if total is None or total > self.capacity:
                total = walk_size(self.root_path)  # the bytes are on the disk already
            fits = total <= self.capacity
            _write_meta_fd(fd, {**meta, "used": total if fits else max(0, total - nbytes)})
        if not fits:
            raise DiskFull(f"{self.root_path}: disk full writing {path} "
                           f"(capacity {self.capacity} bytes, {max(0, self.capacity - total + nbytes)} free)")

    def free(self) -> int | None:
        """Bytes that may still be written, or None for an unbounded directory."""
        if self.capacity is None:
            return None
        return max(0, self.capacity - self.used())

    # Capacity across processes: every reservation takes an exclusive flock on the chunk's
    # metadata file, which keeps a running total ("used"); the bytes are written while the
    # lock is held, unbuffered, so whenever the lock is free the disk holds everything that
    # was reserved, and a fresh count from the disk is exact. The total is recounted when a
    # write would not fit, which also corrects it after files were removed by other means.
    @contextmanager
    def _locked(self) -> Iterator[int]:
        fd = os.open(self._meta_path, os.O_RDWR | os.O_NOFOLLOW)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)

    def _reserve_and_write(self, nbytes: int, path: str, write: Callable[[], None]) -> None:
        """Check there is room for `nbytes`, then run `write`, all under the chunk's lock."""
        if self.capacity is None or nbytes <= 0:
            write()
            return
        with self._locked() as fd:
            meta = _read_meta_fd(fd)
            used = meta.get("used")
            if not isinstance(used, int) or used + nbytes > self.capacity:
                used = walk_size(self.root_path)
            if used + nbytes > self.capacity:
                _write_meta_fd(fd, {**meta, "used": used})
                raise DiskFull(
                    f"{self.root_path}: disk full writing {path} "
                    f"(capacity {self.capacity} bytes, {max(0, self.capacity - used)} free)"
                )
            write()
            _write_meta_fd(fd, {**meta, "used": used + nbytes})

    def write_accounted(self, nbytes: int, label: str, write: Callable[[], None]) -> None:
        """Run `write`, which grows the chunk's data by `nbytes` (negative: shrinks it), under
        the chunk's lock (a batch of files, counted once). Raises DiskFull, `write` not run,
        when they do not fit; when `write` raises, nothing is counted."""
        if nbytes >= 0:
            self._reserve_and_write(nbytes, label, write)
        else:
            self._release(-nbytes, write)

    def _release(self, nbytes: int, free: Callable[[], None] | None = None) -> None:
        """Run `free` (remove a file, or replace one), then take `nbytes` off the running total.

        Both happen under the lock: a recount from the disk in between would already miss
        the bytes, and taking them off again would let the total run low.
        """
        if self.capacity is None or nbytes <= 0:
            if free is not None:
                free()
            return
        with self._locked() as fd:
            if free is not None:
                free()
            meta = _read_meta_fd(fd)
            if isinstance(meta.get("used"), int):
                _write_meta_fd(fd, {**meta, "used": max(0, meta["used"] - nbytes)})

    # -- the fs API -----------------------------------------------------------------
    # Symbolic links: one whose target is inside the chunk is followed, as the OS would;
    # one leading out is refused by every call naming a path through it (`OutsideDisk`,
    # a ResourceNotFound) and left out of listings, so nothing outside is ever read,
    # written, listed or measured through the chunk.
    def validatepath(self, path: str) -> str:
        _path = super().validatepath(path)
        if _path not in ("", "/") and not within(self.real_root, self.getsyspath(_path)):
            raise OutsideDisk(_path)
        return _path

    def _visible(self, directory: str, name: str) -> bool:
        if is_internal(name):
            return False
        full = os.path.join(self.getsyspath(directory), name)
        return not os.path.islink(full) or within(self.real_root, full)

    def listdir(self, path: str) -> list[str]:
        return [n for n in super().listdir(path) if self._visible(path, n)]

    def scandir(self, path: str, namespaces: Any = None, page: Any = None) -> Any:
        return (i for i in super().scandir(path, namespaces, page) if self._visible(path, i.name))

    def openbin(self, path: str, mode: str = "r", buffering: int = -1, **options: Any) -> BinaryIO:
        _mode = Mode(mode)
        _mode.validate_bin()
        if not _mode.writing:
            return super().openbin(path, mode, buffering, **options)
        _path = self.validatepath(path)
        if _path == "/":
            raise fserrors.FileExpected(path)
        if is_internal(os.path.basename(_path)):
            raise fserrors.ResourceReadOnly(path)
        sys_path = self.getsyspath(_path)
        if not os.path.isdir(os.path.dirname(sys_path)):
            raise fserrors.ResourceNotFound(path)
        if os.path.isdir(sys_path):
            raise fserrors.FileExpected(path)
        if _mode.exclusive and os.path.exists(sys_path):
            raise fserrors.FileExists(path)
        if _mode.truncate or _mode.exclusive or not os.path.exists(sys_path):
            base = os.path.basename(sys_path)
            temp = os.path.join(os.path.dirname(sys_path), f".{base}{TEMP_MARK}{secrets.token_hex(4)}")
            return ChunkWriter(self, _path, sys_path, _mode, temp)  # type: ignore[return-value]
        return ChunkWriter(self, _path, sys_path, _mode, None)  # type: ignore[return-value]

    def open(self, path: str, mode: str = "r", buffering: int = -1, encoding: str | None = None,
             errors: str | None = None, newline: str = "", **options: Any) -> Any:
        if not Mode(mode).writing:
            return super().open(path, mode, buffering, encoding, errors, newline, **options)
        # FS.open goes through openbin, where the capacity is enforced (OSFS.open does not).
        return FS.open(self, path, mode, buffering, encoding, errors, newline, **options)

    def copy(self, src_path: str, dst_path: str, overwrite: bool = False, preserve_time: bool = False) -> None:
        # OSFS.copy uses sendfile and would bypass the capacity; go through openbin.
        FS.copy(self, src_path, dst_path, overwrite, preserve_time)

    def remove(self, path: str) -> None:
        try:
            size = self.getsize(path)
        except fserrors.FSError:
            size = 0
        self._release(size, lambda: super(ChunkFS, self).remove(path))
