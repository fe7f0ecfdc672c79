"""An ndb(6) database on disk: one file, or the files its `database=` entry lists.

The I/O edge of the package: reads files, watches them, re-reads them when they change.
It does not parse (parse.py) or search (search.py) itself, and keeps no file open.

attrdb(6): if the first file holds an entry with `database=` (empty value), the database
is the concatenation of the files named by that entry's `file=` attributes, in order.
The first file is read once: where it is listed, or first when it is not listed.
Decisions where Inferno's Db.open differs or is silent:
- a relative `file=` name is taken relative to the first file's directory (Inferno:
  relative to the current directory);
- a listed file that cannot be opened is skipped, as Inferno skips it, and logged at
  INFO (`geryon -v` shows it): Inferno's own /lib/ndb/local lists files a site may
  not have, so a warning would be noise; the database notices when it appears;
- a listed file that is malformed is an error, like a malformed first file;
- every file must be a regular file (`file=/dev/zero` or a FIFO is refused, never read) within
  `Limits` (file size, line and word length); a file over them is an error naming file:line.
"""
from __future__ import annotations

import logging
import os
import stat
import threading
from dataclasses import dataclass

from ndb import search
from ndb.entry import Entry
from ndb.errors import NdbError
from ndb.limits import DEFAULT_LIMITS, Limits
from ndb.parse import parse

log = logging.getLogger(__name__)

# What says a file changed: device, inode, size, mtime in ns; None while it is missing.
_Stamp = tuple[int, int, int, int]


@dataclass(frozen=True)
class _Snapshot:
    """One reading of the database: what was read, and what to watch for change."""

    files: tuple[str, ...]
    entries: tuple[Entry, ...]
    watched: tuple[tuple[str, _Stamp | None], ...]


class Database:
    """An ndb database read from `path`, re-read when one of its files changes.

    Each access stats the files it read (and the listed ones that were missing) and
    re-reads the whole database when any of them changed, so queries always see the
    files as they are. Safe to share between threads.

    Raises:
        NdbError: the first file cannot be read, or a file is malformed; the message is
            one line naming the file (and the line).
    """

    def __init__(self, path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> None:
        self._path = os.fspath(path)
        self._limits = limits
        self._lock = threading.Lock()
        self._snapshot = _load(self._path, limits)

    def __repr__(self) -> str:
        return f"Database({self._path!r})"

    @property
    def path(self) -> str:
        """The first file, as given."""
        return self._path

    @property
    def files(self) -> tuple[str, ...]:
        """The files the database was read from, in order."""
        return self._fresh().files

    @property
    def entries(self) -> tuple[Entry, ...]:
        """Every entry of every file, in order."""
        return self._fresh().entries

    def find(self, attr: str, value: str | None = None) -> list[Entry]:
        """The entries holding `attr=value`, or `attr` with any value when value is None."""
        return search.find(self._fresh().entries, attr, value)

    def query(self, attr: str, value: str, rattr: str) -> list[str]:
        """The values of `rattr` in entries holding `attr=value`, same line first.

        In the order ndb/query -a prints them; the first is what plain ndb/query prints.
        """
        return search.query(self._fresh().entries, attr, value, rattr)

    def changed(self) -> bool:
        """Whether a file read (or listed but missing) changed since it was read."""
        return any(_stamp(name) != stamp for name, stamp in self._snapshot.watched)

    def reload(self) -> None:
        """Read the database again now; on error the previous reading stays."""
        with self._lock:
            self._snapshot = _load(self._path, self._limits)

    def _fresh(self) -> _Snapshot:
        with self._lock:
            if self.changed():
                log.debug("%s: changed, re-reading", self._path)
                self._snapshot = _load(self._path, self._limits)
            return self._snapshot


def open(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Database:  # noqa: A001 - the attrdb(2) name
    """Open the ndb database whose first file is `path` (attrdb(2) `Db.open`).

    Raises:
        NdbError: `path` cannot be read, or a file of the database is malformed, not a
            regular file, or over `limits`.
    """
    return Database(path, limits)


def _load(path: str, limits: Limits) -> _Snapshot:
    text, first_stamp = _read(path, limits)
    first = parse(text, path, limits)
    listing = next((e for e in first if e.haspair("database", "")), None)
    names = listing.getall("file") if listing is not None else []
    if not names:
        return _Snapshot((path,), tuple(first), ((path, first_stamp),))

    files: list[str] = []
    entries: list[Entry] = []
    watched: list[tuple[str, _Stamp | None]] = [(path, first_stamp)]
    first_placed = False
    for name in names:
        full = os.path.join(os.path.dirname(path), name)  # an absolute name stays as it is
        stamp = _stamp(full)
        if not first_placed and stamp is not None and stamp[:2] == first_stamp[:2]:
            files.append(path)  # the first file lists itself: read it once, here
            entries.extend(first)
            first_placed = True
            continue
        try:
            text, stamp = _read(full, limits)
        except _Unopenable as exc:
            log.info("%s: skipping file=%s listed by the database entry: %s", path, name, exc)
            watched.append((full, stamp))
            continue
        watched.append((full, stamp))
        files.append(full)
        entries.extend(parse(text, full, limits))
    if not first_placed:
        files.insert(0, path)
        entries[:0] = first
    return _Snapshot(tuple(files), tuple(entries), tuple(watched))


class _Unopenable(NdbError):
    """A file cannot be opened (a listed one is then skipped, as Inferno skips it)."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _read(path: str, limits: Limits = DEFAULT_LIMITS) -> tuple[str, _Stamp]:
    """The text of `path` and its stamp, taken from the same open file.

    Opened without blocking (a FIFO with no writer would hang the reader) and read
    only when it is a regular file within `limits.max_file`.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _Unopenable(f"can't open {path}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):           # as open(2) of a directory for reading would say
            raise _Unopenable(f"can't open {path}: Is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise NdbError(f"{path}: {_kind(st.st_mode)}, not a regular file: refused")
        if limits.max_file is not None and st.st_size > limits.max_file:
            raise NdbError(f"{path}: file of {st.st_size} bytes is over the limit of {limits.max_file}")
        limit, chunks, got = limits.max_file, [], 0
        while block := os.read(fd, 1 << 20 if limit is None else min(1 << 20, limit + 1 - got)):
            chunks.append(block)                 # the file may grow while it is read
            got += len(block)
            if limit is not None and got > limit:
                raise NdbError(f"{path}: file of over {limit} bytes is over the limit of {limit}")
        data = b"".join(chunks)
    except OSError as exc:
        raise NdbError(f"can't read {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise NdbError(f"{path}:{line}: not UTF-8 text") from exc
    return text, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _stamp(path: str) -> _Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
