"""Disk entries in a local ndb file: replace an app's disks, keeping everything else.

`geryon load` names the chunks it makes in the ndb file (disk.py reads them back):

    name=d0.mbox kfs
        master=local!d0.mbox
        path=../disks/d0.mbox
        replica=d0.mbox.r1
        format=mbox

(`format`: how its records are read back, the reader `geryon mapreduce` uses by default) and one such entry per replica (`name=d0.mbox.r1`, `replicaof=d0.mbox`). On a cluster
there is no `path=` and `master=NODE!CHUNK` names a node's chunk. Entries of the
same app from an earlier load are dropped; other entries, comments and blank lines are
kept as written. The file is rewritten atomically (temporary name, then rename), one
writer at a time (a lock on its directory). `find_disk` and `named_chunks` read entries
back for replication and allocation. The same names can live in the registry's ndb file
instead (`RegistryNdb`: read and edited over the wire, what `geryon load --cluster` uses
unless it is given a file), beside a local file's (`NdbFile`). Not here: how the registry
serves them.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ndb
from geryon.errors import GeryonError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiskEntry:
    """One disk to name: its name, the local chunk directory (None on a cluster), its
    master chunk `host!chunk` (the chunk defaults to the disk's name), its replicas' names."""

    name: str
    path: str | None
    host: str = "local"
    replicas: tuple[str, ...] = ()
    replica_of: str | None = None
    chunk: str | None = None
    format: str = ""          # the record format the load stored (a reader's name), "" if not known

    @property
    def master(self) -> str:
        """`host!chunk`, as ndb's `master=` says it."""
        return f"{self.host}!{self.chunk or self.name}"


def app_disk_pattern(app: str) -> re.Pattern[str]:
    """Names of an app's disks and replicas: `dN.APP`, `dN.APP.rK`."""
    return re.compile(rf"^d\d+\.{re.escape(app)}(\.r\d+)?$")


def entry_for(disk: DiskEntry, base: str) -> ndb.Entry:
    """The ndb entry of a disk; `path=` is relative to `base` (the ndb file's directory)."""
    lines: list[list[ndb.Tuple]] = [
        [ndb.Tuple("name", disk.name), ndb.Tuple("kfs")],
        [ndb.Tuple("master", disk.master)],
    ]
    if disk.path is not None:
        lines.append([ndb.Tuple("path", os.path.relpath(os.path.abspath(disk.path), os.path.abspath(base)))])
    if disk.replicas:
        lines.append([ndb.Tuple("replica", r) for r in disk.replicas])
    if disk.replica_of:
        lines.append([ndb.Tuple("replicaof", disk.replica_of)])
    if disk.format:
        lines.append([ndb.Tuple("format", disk.format)])
    return ndb.Entry(tuple(tuple(line) for line in lines))


def names_pattern(names: Sequence[str]) -> re.Pattern[str]:
    """A pattern matching exactly these disk names (for `replace_disks`)."""
    return re.compile("^(?:" + "|".join(re.escape(n) for n in names) + ")$" if names else r"(?!)")


@contextmanager
def locked(db_file: str) -> Iterator[None]:
    """Hold the ndb file's writer lock for a read-change-write.

    The lock is on the file's directory: the file itself is replaced by rename, and a lock
    file beside it would show up in whatever else that directory holds.
    """
    base = os.path.dirname(os.path.abspath(db_file))
    os.makedirs(base, exist_ok=True)
    fd = os.open(base, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _entry_disk(entry: ndb.Entry, base: str) -> DiskEntry | None:
    name, master = entry.get("name"), entry.get("master")
    if not name or not master or "!" not in master or not entry.has("kfs"):
        return None
    host, chunk = master.split("!", 1)
    path = entry.get("path")
    if path is not None and not os.path.isabs(path):
        path = os.path.join(base, path)
    return DiskEntry(name, path, host, tuple(entry.getall("replica")), entry.get("replicaof"), chunk,
                     entry.get("format") or "")


def read_disks(db_file: str) -> list[DiskEntry]:
    """Every disk the ndb file names (`kfs` entries with a `master=host!chunk`); [] if no file.

    Raises:
        GeryonError: the file is not valid ndb.
    """
    if not os.path.exists(db_file):
        return []
    base = os.path.dirname(os.path.abspath(db_file))
    try:
        entries = ndb.open(db_file).entries
    except ndb.NdbError as exc:
        raise GeryonError(str(exc)) from exc
    return [d for d in (_entry_disk(e, base) for e in entries) if d is not None]


def find_disk(db_file: str, name: str) -> DiskEntry | None:
    """The disk the ndb file names `name`, or None."""
    for d in read_disks(db_file):
        if d.name == name:
            return d
    return None


def named_chunks(db_file: str) -> set[tuple[str, str]]:
    """The `(host, chunk)` pairs the ndb file's disks live on."""
    return {(d.host, d.chunk or d.name) for d in read_disks(db_file)}


def replace_disks(db_file: str, drop: re.Pattern[str], disks: Sequence[DiskEntry]) -> None:
    """Drop the entries whose name matches `drop`, append `disks`, and write atomically.

    Raises:
        GeryonError: the file exists but is not valid ndb.
    """
    with locked(db_file):
        _replace_disks(db_file, drop, disks)


def _replace_disks(db_file: str, drop: re.Pattern[str], disks: Sequence[DiskEntry]) -> None:
    try:
        with open(db_file, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    base = os.path.dirname(os.path.abspath(db_file))
    try:
        out = ndb.replace_entries(text, lambda name: bool(drop.match(name)),
                                  ndb.format_database(entry_for(d, base) for d in disks), db_file)
    except ndb.NdbError as exc:
        raise GeryonError(f"cannot update {db_file}: {exc}") from exc
    os.makedirs(base, exist_ok=True)
    tmp = os.path.join(base, f".{os.path.basename(db_file)}.tmp-{secrets.token_hex(4)}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(out)
    os.replace(tmp, db_file)


class NdbFile:
    """Disk names kept in a local ndb file (`--ndb FILE`, $GERYON_NDB, or ./ndb/cluster)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.where = path
        self.exclude: tuple[str, ...] = (path,)     # a load never reads its own ndb file as data

    def disks(self) -> list[DiskEntry]:
        return read_disks(self.path)

    def replace(self, drop: re.Pattern[str], disks: Sequence[DiskEntry]) -> None:
        replace_disks(self.path, drop, disks)


DEFAULT_EDIT_TRIES = 5
"""Times an edit of the registry's ndb file is read again and retried when another changed it."""


class RegistryNdb:
    """Disk names kept in the registry's ndb file (`geryon registry serve --ndb FILE`), the
    cluster's one list: read and edited over the wire, so every machine sees the same names.

    Raises (every method): RegistryError, e.g. ServiceNotFound when the registry keeps no
    ndb file, GeryonError when the file is not valid ndb.
    """

    def __init__(self, registry: Any, tries: int = DEFAULT_EDIT_TRIES) -> None:
        self.registry = registry
        self.tries = tries
        self.exclude: tuple[str, ...] = ()
        self.where = "the registry's ndb file"

    def _read(self) -> tuple[list[DiskEntry], str]:
        doc = self.registry.ndb()
        self.where = f"the registry's {doc.get('path') or 'ndb file'}"
        try:
            entries = ndb.parse(str(doc.get("text") or ""), self.where)
        except ndb.NdbError as exc:
            raise GeryonError(str(exc)) from exc
        return [d for d in (_entry_disk(e, "/") for e in entries) if d is not None], str(doc.get("version") or "")

    def disks(self) -> list[DiskEntry]:
        return self._read()[0]

    def replace(self, drop: re.Pattern[str], disks: Sequence[DiskEntry]) -> None:
        from registry.errors import Conflict

        add = ndb.format_database(entry_for(d, "/") for d in disks)
        for attempt in range(self.tries):
            current, version = self._read()
            names = sorted({d.name for d in current if drop.match(d.name)})
            try:
                self.registry.edit_ndb(names, add, base=version)
                return
            except Conflict:
                if attempt == self.tries - 1:
                    raise
                log.info("%s changed meanwhile: naming the disks again", self.where)
