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
back for replication and allocation. Not here: the registry's copy of these names.
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


def _blocks(text: str) -> list[str]:
    """The file cut into entries (a first line and its indented lines) and other lines."""
    blocks: list[str] = []
    for line in text.splitlines(keepends=True):
        if line[:1] in (" ", "\t") and blocks and not blocks[-1].lstrip().startswith("#") and blocks[-1].strip():
            blocks[-1] += line
        else:
            blocks.append(line)
    return blocks


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
    try:
        ndb.parse(text, db_file)  # refuse to rewrite a file we cannot read
        kept = []
        for block in _blocks(text):
            entries = ndb.parse(block, db_file) if block.strip() and not block.lstrip().startswith("#") else []
            if entries and any(drop.match(e.get("name") or "") for e in entries):
                continue
            kept.append(block)
    except ndb.NdbError as exc:
        raise GeryonError(f"cannot update {db_file}: {exc}") from exc
    out = "".join(kept)
    if out and not out.endswith("\n"):
        out += "\n"
    base = os.path.dirname(os.path.abspath(db_file))
    out += ndb.format_database(entry_for(d, base) for d in disks)
    os.makedirs(base, exist_ok=True)
    tmp = os.path.join(base, f".{os.path.basename(db_file)}.tmp-{secrets.token_hex(4)}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(out)
    os.replace(tmp, db_file)
