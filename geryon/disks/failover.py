"""Reading a disk from whichever copy works: the master, else its replicas, verified.

`open_failover("d0.mbox", registry, secret, ndb_file)` finds the disk's copies (the master
and every replica the ndb file or the registry names) and returns a `Disk` whose `fs` is a
`FailoverFS`. Reads go to the copy in use (the master first) and are verified against that
copy's checksum manifest; when the copy cannot be reached (a connection refused or lost),
no longer serves the chunk, or hands out bytes that do not match their checksums, the read
moves to the next copy, carrying on at the same byte offset, and logs one warning:

    d0.mbox: master n1!c0 failed (...): reading replica d0.mbox.r1 (n2!chunk0)

Later reads stay on the copy that worked. When no copy can be read, the error names every
copy and why; damaged bytes are never returned. A missing file is not a reason to switch
(replicas hold the same files). Writes go to the master only, never to a replica.

This is for library and command-line reads; the cluster job driver retries map tasks on
the next location itself. Not here: making or syncing replicas (`replicate`); the file read
across copies and `Copy` (`geryon.disks.failoverfile`, `Copy` importable from here as before).
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO, TypeVar

from fs import errors as fserrors
from fs.base import FS
from fs.info import Info
from fs.mode import Mode

from geryon.disks.checksum import ChecksumMismatch, FileSum, read_manifest
from geryon.disks.chunk import ChunkFS
from geryon.disks.copies import copies_of, named_disks
from geryon.disks.failoverfile import Copy, FailoverFile, failover_worthy
from geryon.disks.resolve import Disk
from geryon.disks.verified import open_verified, open_verified_stream
from geryon.errors import UnknownDisk

log = logging.getLogger(__name__)

T = TypeVar("T")


class FailoverFS(FS):
    """A disk read from the first copy that works (see the module's docstring).

    Args:
        disk: the disk's name, for messages (and the master copy's `name`).
        copies: the master first, then the replicas.
    """

    verifies_reads = True
    """Reads are verified here; `readers` need not fetch a manifest again."""

    _meta = {"case_insensitive": False, "invalid_path_chars": "\0", "max_path_length": None,
             "max_sys_path_length": None, "network": True, "read_only": False,
             "supports_rename": True, "thread_safe": True, "unicode_paths": True, "virtual": False}

    def __init__(self, disk: str, copies: Sequence[Copy]) -> None:
        super().__init__()
        if not copies:
            raise UnknownDisk(f"{disk}: no copies")
        self.disk = disk
        self.copies = list(copies)
        self._active = 0
        self._manifests: dict[int, dict[str, FileSum] | None] = {}
        self._state_lock = threading.Lock()
        live = [i for i, c in enumerate(self.copies) if c.fs is not None]
        if live and live[0] != 0:
            master, good = self.copies[0], self.copies[live[0]]
            log.warning("%s: master %s failed (%s): reading %s (%s)", disk, master.where, master.why or "not live",
                        good.role(disk), good.where)
            self._active = live[0]

    def __repr__(self) -> str:
        return f"FailoverFS({self.disk!r}, {[c.where for c in self.copies]!r})"

    @property
    def active(self) -> Copy:
        """The copy reads go to now."""
        return self.copies[self._active]

    def close(self) -> None:
        if not self.isclosed():
            for c in self.copies:
                if c.fs is not None:
                    c.fs.close()
        super().close()

    # -- choosing a copy --------------------------------------------------------------------
    def _order(self) -> list[int]:
        n = len(self.copies)
        return [(self._active + k) % n for k in range(n)]

    def _switch(self, failed: int, exc: BaseException) -> None:
        """Log a failed copy and move reads to the next live one (if another thread has not)."""
        with self._state_lock:
            if self._active != failed:
                return
            for k in range(1, len(self.copies)):
                nxt = (failed + k) % len(self.copies)
                if self.copies[nxt].fs is not None:
                    bad, good = self.copies[failed], self.copies[nxt]
                    log.warning("%s: %s %s failed (%s): reading %s (%s)", self.disk, bad.role(self.disk), bad.where,
                                exc, good.role(self.disk), good.where)
                    self._active = nxt
                    return

    def _try(self, fn: Callable[[int, Copy], T], failed: dict[int, BaseException] | None = None) -> T:
        """`fn` on the copy in use, then on each other live copy, until one works.

        `failed`: copies that already failed this caller, with why; they are not tried again.
        """
        failures: list[tuple[Copy, BaseException | str]] = []
        last: BaseException | None = None
        for i in self._order():
            copy = self.copies[i]
            if copy.fs is None:
                failures.append((copy, copy.why or "not live"))
                continue
            if failed and i in failed:
                failures.append((copy, failed[i]))
                continue
            try:
                return fn(i, copy)
            except Exception as exc:
                if not failover_worthy(exc):
                    raise
                failures.append((copy, exc))
                last = exc
                self._switch(i, exc)
        raise self._exhausted(failures) from last

    def _exhausted(self, failures: list[tuple[Copy, BaseException | str]]) -> Exception:
        from geryon.net.connection import NodeUnavailable

        detail = "; ".join(f"{c.role(self.disk)} {c.where}: {e}" for c, e in failures)
        left = "" if len(self.copies) > 1 else " (it has no replica)"
        if any(isinstance(e, ChecksumMismatch) for _, e in failures):
            return ChecksumMismatch(f"{self.disk}: no intact copy can be read{left}: {detail}")
        return NodeUnavailable(f"{self.disk}: no copy can be read{left}: {detail}")

    def _master(self) -> FS:
        master = self.copies[0]
        if master.fs is None:
            from geryon.net.connection import NodeUnavailable

            raise NodeUnavailable(f"{self.disk}: master {master.where} is not live ({master.why or 'no node serves it'}); "
                                  f"replicas are read-only (geryon disk promote {self.disk})")
        return master.fs

    def _manifest(self, i: int) -> dict[str, FileSum] | None:
        if i not in self._manifests:
            copy = self.copies[i]
            if copy.root is not None:
                manifest = read_manifest(copy.root)
            else:
                fetch = getattr(copy.fs, "manifest", None)
                manifest = fetch() if callable(fetch) else None
            self._manifests[i] = manifest
        return self._manifests[i]

    def forget_manifest(self, i: int) -> None:
        """Fetch copy `i`'s manifest again next time (it may have changed since)."""
        self._manifests.pop(i, None)

    def _open_copy(self, i: int, copy: Copy, path: str) -> tuple[BinaryIO, int | None]:
        """A verified reader of `path` on one copy, and the file's size if known.

        A size that differs from the record is checked once more against a fresh manifest
        (the file may have been rewritten since the manifest was fetched).
        """
        fresh = i not in self._manifests
        try:
            return self._open_once(i, copy, path)
        except ChecksumMismatch:
            if fresh:
                raise
            self.forget_manifest(i)
            return self._open_once(i, copy, path)

    def _open_once(self, i: int, copy: Copy, path: str) -> tuple[BinaryIO, int | None]:
        label = f"{self.disk}:{path.lstrip('/')}"
        manifest = self._manifest(i)
        if copy.root is not None:
            full = os.path.join(copy.root, path.lstrip("/"))
            if not os.path.isfile(full):
                assert copy.fs is not None
                copy.fs.getinfo(path)                       # raises the fs error for it
                raise fserrors.FileExpected(path)
            return open_verified(copy.root, path, label, manifest), os.path.getsize(full)
        assert copy.fs is not None
        raw = copy.fs.openbin(path)
        size = getattr(raw, "size", None)
        return open_verified_stream(raw, path, label, manifest), size if isinstance(size, int) else None

    # -- reads ------------------------------------------------------------------------------
    def getinfo(self, path: str, namespaces: Any = None) -> Info:
        _path = self.validatepath(path)
        return self._try(lambda i, c: c.fs.getinfo(_path, namespaces))  # type: ignore[union-attr]

    def listdir(self, path: str) -> list[str]:
        _path = self.validatepath(path)
        return self._try(lambda i, c: c.fs.listdir(_path))  # type: ignore[union-attr]

    def scandir(self, path: str, namespaces: Any = None, page: Any = None) -> Iterator[Info]:
        _path = self.validatepath(path)
        return iter(self._try(lambda i, c: list(c.fs.scandir(_path, namespaces, page))))  # type: ignore[union-attr]

    def openbin(self, path: str, mode: str = "r", buffering: int = -1, **options: Any) -> BinaryIO:
        _mode = Mode(mode)
        _mode.validate_bin()
        if _mode.writing:
            return self._master().openbin(path, mode, buffering, **options)
        return FailoverFile(self, self.validatepath(path))  # type: ignore[return-value]

    def readbytes(self, path: str) -> bytes:
        with self.openbin(path) as f:
            return f.read()

    def download(self, path: str, file: Any, chunk_size: int | None = None, **options: Any) -> None:
        with self.openbin(path) as f:
            while block := f.read(chunk_size or (1 << 20)):
                file.write(block)

    def usage(self) -> dict[str, Any]:
        """The capacity and use of the copy in use."""
        return self._try(lambda i, c: c.fs.usage() if hasattr(c.fs, "usage") else  # type: ignore[union-attr]
                         {"capacity": c.fs.capacity, "used": c.fs.used()})  # type: ignore[union-attr]

    # -- writes: the master only --------------------------------------------------------------
    def makedir(self, path: str, permissions: Any = None, recreate: bool = False) -> Any:
        self._master().makedir(path, permissions, recreate)
        return self.opendir(path)

    def remove(self, path: str) -> None:
        self._master().remove(path)

    def removedir(self, path: str) -> None:
        self._master().removedir(path)

    def removetree(self, dir_path: str) -> None:
        self._master().removetree(dir_path)

    def setinfo(self, path: str, info: Any) -> None:
        self._master().setinfo(path, info)

    def move(self, src_path: str, dst_path: str, overwrite: bool = False, preserve_time: bool = False) -> None:
        self._master().move(src_path, dst_path, overwrite, preserve_time)

    def copy(self, src_path: str, dst_path: str, overwrite: bool = False, preserve_time: bool = False) -> None:
        self._master().copy(src_path, dst_path, overwrite, preserve_time)

    def writebytes(self, path: str, contents: bytes) -> None:
        self._master().writebytes(path, contents)

    def upload(self, path: str, file: Any, chunk_size: int | None = None, **options: Any) -> None:
        self._master().upload(path, file, chunk_size, **options)


# -- finding the copies ---------------------------------------------------------------------

def _remote(name: str, host: str, chunk: str, registry: Any, secret: bytes | None) -> Copy:
    from geryon.disks.allocate import locate

    where = f"{host}!{chunk}"
    ref = locate(registry, host, chunk) if registry is not None else None
    if ref is None:
        return Copy(name, where, None, why="not live: no node serves it")
    return Copy(name, where, ref.open(secret))


def find_copies(name: str, registry: Any = None, secret: bytes | None = None,
                ndb_file: str | None = None) -> list[Copy]:
    """The copies of disk `name`, master first: from the ndb file when it names the disk
    (local `path=` directories, else `master=NODE!CHUNK` through the registry), else from
    the registry's entries for ndb-named disks.

    Raises:
        UnknownDisk: neither names the disk.
    """
    from geryon.disks.diskdb import find_disk

    entry = find_disk(ndb_file, name) if ndb_file else None
    if entry is not None:
        out = []
        for n in (name, *entry.replicas):
            e = entry if n == name else find_disk(ndb_file, n)  # type: ignore[arg-type]
            if e is None:
                out.append(Copy(n, n, None, why=f"not named in {ndb_file}"))
            elif e.path is not None and os.path.isdir(e.path):
                out.append(Copy(n, e.path, ChunkFS(e.path), root=e.path))
            else:
                out.append(_remote(n, e.host, e.chunk or e.name, registry, secret))
        return out
    if registry is None:
        raise UnknownDisk(f"{name}: unknown disk (no registry, and not named in {ndb_file or 'an ndb file'})")
    out = [_remote(svc.name, svc.get("host") or "?", svc.get("chunk") or "?", registry, secret)
           for svc in copies_of(name, named_disks(registry))]
    if not out:
        raise UnknownDisk(f"{name}: unknown disk (the registry names no such disk)")
    return out


def open_failover(name: str, registry: Any = None, secret: bytes | None = None,
                  ndb_file: str | None = None) -> Disk:
    """Disk `name`, read from its master or, when that fails, a replica (`FailoverFS`).

    Raises:
        UnknownDisk: the disk is not named anywhere.
    """
    return Disk(name, FailoverFS(name, find_copies(name, registry, secret, ndb_file)))
