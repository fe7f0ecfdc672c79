"""`GeryonFileSystem`: Geryon disks as an fsspec filesystem, for pandas, pyarrow and Dask.

Registered under the `fsspec.specs` entry point as `geryon`, so any fsspec user opens
Geryon disks by URL:

    pandas.read_csv("geryon://node:8700/c0/JOB/part-00000", sep="\\t", header=None)
    dask.bag.read_text("geryon://d0.mbox/*")

A path's first part says which disk: `HOST:PORT/CHUNK` is a chunk on that node (a
`RemoteFS`, `geryon.disks.remote`), anything else is a disk name (`d0.mbox`) resolved through
the registry and ndb into a `FailoverFS` (`geryon.disks.failover`: reads from the master, else a
replica, verified against the disk's checksums; writes go to the master). The rest is the
path inside that disk. Every request is signed with the cluster secret found as the CLI
finds it ($GERYON_SECRET_FILE, else the default file) unless `secret`/`secret_file` says;
disk names use the registry given as `registry`, else $GERYON_REGISTRY, else one found
over zeroconf (`geryon.cluster.where.api_where`, the Python API's rule).

Reads are ranged: a file opened for reading fetches blocks (`DEFAULT_BLOCK_SIZE`) with one
`Range` request each on a kept-alive connection, so an open file holds no connection; writes are spooled here and committed whole by the node when the file closes
(so a full disk leaves no partial file): the file and its reads and writes are
`geryon.disks.fsspecfile`'s. Errors: a missing file or disk is
`FileNotFoundError`, an existing one `FileExistsError`; an unreachable node or a refused
secret is `NodeUnavailable` naming the URL. Not here: the `fs` (pyfilesystem2) opener
(`geryon.disks.remote.GeryonOpener`) and serving disks.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fs import errors as fserrors
from fs.base import FS
from fsspec.spec import AbstractFileSystem

from geryon.disks.fsspecfile import (DEFAULT_BLOCK_SIZE, GeryonFile, bytes_source, master_of, read_range, with_parents,
                                     write_whole)
from geryon.errors import DiskFull, GeryonError, UnknownDisk
from geryon.net.connection import DEFAULT_TIMEOUT, NodeUnavailable
from registry import tls

log = logging.getLogger(__name__)

PROTOCOL = "geryon"
"""The URL scheme (and fsspec protocol name)."""

_HOSTPORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+):\d+")

__all__ = ["DEFAULT_BLOCK_SIZE", "GeryonFile", "GeryonFileSystem", "split_path"]


def split_path(path: str) -> tuple[str, str]:
    """A path without its scheme -> (the disk it names, the path inside that disk).

    `host:port/c0/a/b` -> (`host:port/c0`, `/a/b`); `d0.mbox/a` -> (`d0.mbox`, `/a`).

    Raises:
        ValueError: no disk is named (`geryon://` alone, or `geryon://host:port` with no chunk).
    """
    first, _, rest = path.strip("/").partition("/")
    if _HOSTPORT.fullmatch(first):
        chunk, _, inner = rest.partition("/")
        if not chunk:
            raise ValueError(f"{PROTOCOL}://{path}: names no chunk ({PROTOCOL}://HOST:PORT/CHUNK/PATH)")
        return f"{first}/{chunk}", "/" + inner
    if not first:
        raise ValueError(f"{PROTOCOL}://{path}: names no disk ({PROTOCOL}://HOST:PORT/CHUNK/PATH "
                         f"or {PROTOCOL}://DISK/PATH)")
    return first, "/" + rest


@contextlib.contextmanager
def _translating(path: str) -> Iterator[None]:
    """fs (pyfilesystem2) errors as the builtin OSErrors fsspec users catch, naming `path`."""
    url = f"{PROTOCOL}://{path}"
    try:
        yield
    except NodeUnavailable as exc:
        raise NodeUnavailable(f"{url}: {exc}") from exc
    except DiskFull:
        raise
    except UnknownDisk as exc:
        raise FileNotFoundError(errno.ENOENT, str(exc), url) from exc
    except fserrors.ResourceNotFound as exc:
        raise FileNotFoundError(errno.ENOENT, _why(exc, "no such file or directory"), url) from exc
    except (fserrors.DestinationExists, fserrors.DirectoryExists, fserrors.FileExists) as exc:
        raise FileExistsError(errno.EEXIST, "already exists", url) from exc
    except fserrors.FileExpected as exc:
        raise IsADirectoryError(errno.EISDIR, "is a directory", url) from exc
    except fserrors.DirectoryExpected as exc:
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", url) from exc
    except fserrors.DirectoryNotEmpty as exc:
        raise OSError(errno.ENOTEMPTY, "directory not empty", url) from exc
    except (fserrors.PermissionDenied, fserrors.ResourceReadOnly) as exc:
        raise PermissionError(errno.EACCES, _why(exc, "permission denied"), url) from exc
    except fserrors.IllegalBackReference as exc:
        raise PermissionError(errno.EACCES, "path leaves the disk", url) from exc
    except fserrors.FSError as exc:
        raise OSError(errno.EIO, str(exc), url) from exc


def _why(exc: fserrors.FSError, default: str) -> str:
    text = str(exc)
    return text if text.startswith("no chunk") else default


def _entry(name: str, info: Any) -> dict[str, Any]:
    """An fsspec info dict from a pyfilesystem2 `Info` (with the details namespace)."""
    is_dir = info.is_dir
    out: dict[str, Any] = {"name": name, "size": 0 if is_dir else info.size,
                           "type": "directory" if is_dir else "file"}
    modified = info.get("details", "modified")
    if modified is not None:
        out["mtime"] = float(modified)
    return out


class GeryonFileSystem(AbstractFileSystem):
    """Geryon disks through fsspec (see the module's docstring for paths and defaults).

    Args:
        secret: the cluster secret (bytes).
        secret_file: a file holding it (followed across `geryon init --rotate`).
        registry: for disk names: a registry URL or a `registry.client.RegistryClient`.
        ndb: an ndb file naming disks (local `path=` copies, or `master=NODE!CHUNK`).
        timeout: seconds per request to a node.
    """

    protocol = (PROTOCOL,)
    root_marker = ""
    cachable = True

    def __init__(self, secret: bytes | None = None, secret_file: str | None = None, registry: Any = None,
                 ndb: str | None = None, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from geryon.disks.remote import library_secret
        from registry.secretfile import watch_secret

        try:
            self._secret = (watch_secret(Path(secret_file)) if secret_file else
                            secret if secret is not None else library_secret())
        except GeryonError:
            raise
        except Exception as exc:                  # an unreadable or unsafe secret file
            raise GeryonError(str(exc)) from exc
        self._registry, self._ndb, self._timeout = registry, ndb, timeout
        self._disks: dict[str, FS] = {}
        self._lock = threading.Lock()

    # -- which disk -----------------------------------------------------------------------
    def _disk(self, root: str) -> FS:
        """The `fs` filesystem of a path's first part, opened once and kept."""
        with self._lock:
            disk = self._disks.get(root)
        if disk is not None:
            return disk
        with _translating(root):
            disk = self._open_disk(root)
        with self._lock:
            kept = self._disks.setdefault(root, disk)
        if kept is not disk:
            disk.close()
        return kept

    def _open_disk(self, root: str) -> FS:
        from geryon.disks.remote import RemoteFS

        hostport, _, chunk = root.partition("/")
        if chunk:
            return RemoteFS(tls.base_url(hostport), chunk, self._secret, timeout=self._timeout)
        from geryon.disks.failover import open_failover

        registry, owned = self._registry, None
        try:
            if registry is None:
                from geryon.cluster.where import api_where

                where, _ = api_where(False, self._secret, os.environ, names_data=True,
                                     elsewhere=f"{root} is a disk name (registry=URL names its registry)")
                registry = where.registry
            if isinstance(registry, str):
                from registry.client import RegistryClient

                registry = owned = RegistryClient(registry, secret=self._secret, owner="fsspec")
            return open_failover(root, registry, self._secret, self._ndb).fs
        except UnknownDisk:
            raise
        except GeryonError as exc:
            raise UnknownDisk(f"{root}: {exc}") from exc
        finally:
            if owned is not None:
                owned.close()

    def _locate(self, path: str) -> tuple[str, FS, str]:
        """(the stripped path, its disk's fs, the path inside the disk)."""
        path = self._strip_protocol(path)
        root, inner = split_path(path)
        return path, self._disk(root), inner

    def _forget(self, path: str) -> None:
        """Drop a disk whose every copy failed, so the next call resolves it afresh."""
        with contextlib.suppress(ValueError):
            root, _ = split_path(self._strip_protocol(path))
            with self._lock:
                disk = self._disks.pop(root, None)
            if disk is not None:
                disk.close()

    @contextlib.contextmanager
    def _on(self, path: str) -> Iterator[tuple[str, FS, str]]:
        """`_locate(path)`, with errors translated; a dead disk is forgotten."""
        shown = self._strip_protocol(path)
        try:
            with _translating(shown):
                yield self._locate(path)
        except NodeUnavailable:
            self._forget(path)
            raise

    def close(self) -> None:
        """Close every disk's connections (idempotent); the instance stays usable."""
        with self._lock:
            disks, self._disks = list(self._disks.values()), {}
        for disk in disks:
            disk.close()

    # -- reading the tree -----------------------------------------------------------------
    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        with self._on(path) as (name, disk, inner):
            return _entry(name, disk.getinfo(inner, ["details"]))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        with self._on(path) as (name, disk, inner):
            try:
                infos = list(disk.scandir(inner, ["details"]))
            except fserrors.DirectoryExpected:
                infos = None
            if infos is None:
                entries = [_entry(name, disk.getinfo(inner, ["details"]))]
            else:
                entries = sorted((_entry(f"{name}/{i.name}", i) for i in infos), key=lambda e: e["name"])
        return entries if detail else [e["name"] for e in entries]

    def modified(self, path: str) -> Any:
        import datetime

        mtime = self.info(path).get("mtime")
        if mtime is None:
            raise NotImplementedError(f"{PROTOCOL}://{path}: the node reports no modification time")
        return datetime.datetime.fromtimestamp(mtime, tz=datetime.timezone.utc)

    def ukey(self, path: str) -> str:
        info = self.info(path)
        return f"{info['name']}:{info['size']}:{info.get('mtime')}"

    # -- files ---------------------------------------------------------------------------
    def _open(self, path: str, mode: str = "rb", block_size: Any = None, autocommit: bool = True,
              cache_options: Any = None, **kwargs: Any) -> GeryonFile:
        if mode == "xb" and self.exists(path):
            raise FileExistsError(errno.EEXIST, "already exists", f"{PROTOCOL}://{self._strip_protocol(path)}")
        return GeryonFile(self, path, mode, block_size=block_size or DEFAULT_BLOCK_SIZE,
                          autocommit=autocommit, cache_options=cache_options, **kwargs)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        with self._on(path) as (_, disk, inner):
            if start is None and end is None:
                return disk.readbytes(inner)
            if (start is not None and start < 0) or (end is not None and end < 0):
                size = disk.getinfo(inner, ["details"]).size
                start = size + start if start is not None and start < 0 else start
                end = size + end if end is not None and end < 0 else end
            if end is None:
                with disk.openbin(inner) as raw:
                    raw.seek(start or 0)
                    return raw.read()
            return read_range(disk, inner, start or 0, end)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        with self._on(path) as (_, disk, inner):
            write_whole(disk, inner, bytes_source(bytes(value)), exclusive=mode == "create")

    def put_file(self, lpath: str, rpath: str, callback: Any = None, mode: str = "overwrite",
                 **kwargs: Any) -> None:
        if os.path.isdir(lpath):
            self.makedirs(rpath, exist_ok=True)
            return
        with open(lpath, "rb") as f, self._on(rpath) as (_, disk, inner):
            write_whole(disk, inner, f, exclusive=mode == "create")

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
        if split_path(src)[0] == split_path(dst)[0]:
            with self._on(src) as (_, disk, inner1):
                inner2 = split_path(dst)[1]
                if disk.isdir(inner1):
                    disk.makedirs(inner2, recreate=True)
                else:
                    with_parents(master_of(disk), inner2, lambda: disk.copy(inner1, inner2, overwrite=True))
            return
        with self._on(src) as (_, sdisk, sinner):
            if sdisk.isdir(sinner):
                self.makedirs(dst, exist_ok=True)
                return
            with tempfile.TemporaryFile() as spool:
                sdisk.download(sinner, spool)
                spool.seek(0)
                with self._on(dst) as (_, ddisk, dinner):
                    write_whole(ddisk, dinner, spool, exclusive=False)

    def mv(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: Any = None, **kwargs: Any) -> None:
        if isinstance(path1, str) and isinstance(path2, str):
            src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
            if src == dst:
                return
            if split_path(src)[0] == split_path(dst)[0] and self.isfile(src) and not self.isdir(dst):
                with self._on(src) as (_, disk, inner):
                    inner2 = split_path(dst)[1]
                    with_parents(master_of(disk), inner2, lambda: disk.move(inner, inner2, overwrite=True))
                return
        super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)

    # -- directories ---------------------------------------------------------------------
    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        with self._on(path) as (_, disk, inner):
            if disk.exists(inner):
                raise fserrors.DirectoryExists(inner)
            if create_parents:
                disk.makedirs(inner, recreate=True)
            else:
                disk.makedir(inner)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        with self._on(path) as (_, disk, inner):
            if inner == "/":
                return
            disk.makedirs(inner, recreate=exist_ok)

    def rmdir(self, path: str) -> None:
        with self._on(path) as (_, disk, inner):
            disk.removedir(inner)

    def rm_file(self, path: str) -> None:
        with self._on(path) as (_, disk, inner):
            disk.remove(inner)

    def _rm(self, path: str) -> None:
        with self._on(path) as (_, disk, inner):
            if disk.isdir(inner):
                if inner != "/":
                    disk.removedir(inner)
            else:
                disk.remove(inner)

    def rm(self, path: Any, recursive: bool = False, maxdepth: Any = None) -> None:
        # One request for a whole tree, not one per file (the node's removetree).
        if isinstance(path, str) and recursive and maxdepth is None and not any(c in path for c in "*?["):
            with self._on(path) as (_, disk, inner):
                if disk.isdir(inner):
                    disk.removetree(inner)          # the directory too (its contents only at "/")
                    return
        for p in reversed(self.expand_path(path, recursive=recursive, maxdepth=maxdepth)):
            self._rm(p)
