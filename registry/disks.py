"""Named disks: the registry entries Geryon's `refresh` script kept by hand, computed.

An ndb file names disks (`name=d0.mbox kfs master=host0!chunk0 replica=d0.replica`);
chunk services register themselves as `tcp!host!port name HOST id CHUNK ...` (lab 36:
`grid/register -a id chunk0`). For each named disk the registry holds an entry
`d0.mbox host HOST chunk CHUNK addr tcp!host!port replica d0.replica format mbox`, where `addr` is
present only while the master chunk's service is registered. `plan` is pure;
this is the only module that touches the `ndb` package (the dependency stays here), and
`edit_file` the only code that writes the registry's ndb file (for clients naming disks:
`geryon load --cluster`).
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import ndb

from registry.errors import BadRequest, Conflict, RegistryError
from registry.store import Service
from registry.text import Pairs

log = logging.getLogger(__name__)

DISK_OWNER = "#ndb"
"""Owner of the entries made from the ndb file (clients cannot claim `#` owners)."""


@dataclass(frozen=True)
class DiskName:
    """One ndb entry naming a disk: `name=NAME kfs master=HOST!CHUNK [replica=R]`."""

    name: str
    host: str
    chunk: str
    replica: str | None = None
    format: str | None = None      # the record format its load recorded (`format=mbox`)


def disk_names(entries: Iterable[ndb.Entry]) -> list[DiskName]:
    """The named disks among ndb entries (those with `kfs`, `name` and `master`).

    refresh: ``names=`{ndb/query -a kfs '' name}``, then `split !` of `master`.
    """
    out: list[DiskName] = []
    seen: set[str] = set()
    for entry in entries:
        if not entry.has("kfs"):
            continue
        name, master = entry.get("name"), entry.get("master")
        if not name or not master or "!" not in master or name in seen:
            if name and not master:
                log.debug("ndb disk %s has no master=host!chunk; skipped", name)
            continue
        host, chunk = master.split("!", 1)
        seen.add(name)
        out.append(DiskName(name, host, chunk, entry.get("replica"), entry.get("format")))
    return out


def chunk_address(host: str, chunk: str, services: Iterable[Service]) -> str | None:
    """The address of the live chunk service `host!chunk` (refresh: `regquery -n name $host id $chunk`)."""
    for svc in services:
        if svc.get("name") == host and svc.get("id") == chunk:
            return svc.name
    return None


def disk_attrs(disk: DiskName, services: Iterable[Service]) -> Pairs:
    """The attributes of the registry entry for `disk`, given the live services."""
    attrs: list[tuple[str, str]] = [("host", disk.host), ("chunk", disk.chunk)]
    addr = chunk_address(disk.host, disk.chunk, services)
    if addr is not None:
        attrs.append(("addr", addr))
    if disk.replica is not None:
        attrs.append(("replica", disk.replica))
    if disk.format:
        attrs.append(("format", disk.format))
    return tuple(attrs)


def plan(disks: Iterable[DiskName], services: Iterable[Service]) -> dict[str, Pairs]:
    """What the registry should hold for the named disks: name -> attributes."""
    services = [s for s in services if s.get("id") is not None]
    return {d.name: disk_attrs(d, services) for d in disks}


class DiskNames:
    """The named disks of an ndb file, re-read when the file changes.

    A missing, malformed or oversized file (or one naming `file=/dev/zero`: see
    `ndb.Limits`) is logged (once per distinct error) and the last good reading is kept;
    a file that never was readable names no disks. `read` blocks: the server calls it
    in a thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: ndb.Database | None = None
        self._disks: list[DiskName] = []
        self._last_error = ""

    def read(self) -> list[DiskName]:
        """The named disks as the file says now."""
        try:
            if self._db is None:
                if not self.path.exists():          # not made yet: the first load makes it
                    return []
                self._db = ndb.open(self.path)
            self._disks = disk_names(self._db.entries)
            if self._last_error:
                log.warning("ndb %s: read again: %d named disks", self.path, len(self._disks))
            self._last_error = ""
        except (ndb.NdbError, OSError) as exc:
            if str(exc) != self._last_error:
                self._last_error = str(exc)
                log.warning("ndb %s: %s (keeping %d named disks)", self.path, exc, len(self._disks))
        return list(self._disks)


def text_digest(text: str) -> str:
    """The version of an ndb file's text that an edit names as its base (sha256, hex)."""
    return hashlib.sha256(text.encode()).hexdigest()


def read_text(path: Path) -> str:
    """The ndb file's text ("" when it does not exist yet)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"ndb {path}: {exc}") from exc


def edit_file(path: Path, drop: Sequence[str], add: str, base: str | None, text: str | None = None) -> str:
    """Drop the entries named `drop` from the ndb file, append `add`, write it atomically
    (or, given `text`, make that the file's whole text).

    One writer at a time: a lock on the file's directory (the file is replaced by rename),
    the lock `geryon load` takes for a local ndb file too. Returns the new text's digest.

    Raises:
        Conflict: `base` is given and the file's text is no longer that version.
        BadRequest: the file or `add` is not valid ndb.
    """
    names = set(drop)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        current = read_text(path)
        if base is not None and text_digest(current) != base:
            raise Conflict(f"ndb {path} changed meanwhile: read it again")
        try:
            out = ndb.replace_entries(current if text is None else "", names.__contains__,
                                      add if text is None else text, str(path))
        except ndb.NdbError as exc:
            raise BadRequest(f"cannot update {path}: {exc}") from exc
        tmp = directory / f".{path.name}.tmp-{secrets.token_hex(4)}"
        try:
            tmp.write_text(out, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RegistryError(f"cannot write {path}: {exc}") from exc
    finally:
        os.close(fd)
    return text_digest(out)
