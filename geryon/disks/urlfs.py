"""Any fsspec URL (`file://`, `s3://`, `gs://`, `hdfs://`, ...) as a read-only input disk.

A job's input given as `SCHEME://...` (other than `geryon://`, which has its own native disks)
is opened through fsspec (`fsspec.core.url_to_fs`) when the matching backend is installed
(s3fs, gcsfs, pyarrow's HDFS, ...): `UrlFS` is the pyfilesystem2 face the planner and the
readers use (`files()` lists every file with its size, `openbin` gives a seekable ranged
reader). Dask mode plans splits from it on the driver and each worker opens the same URL
(`open_url`): an URL only one process can see (`memory://`) is refused. Read-only: a job never
writes into its input. Not here: `geryon://` for fsspec users (`geryon.disks.fsspecfs`).
"""
from __future__ import annotations

import posixpath
from typing import Any

from fs import errors as fserrors
from fs.base import FS
from fs.info import Info

from geryon.errors import GeryonError, UnknownDisk

LOCAL_ONLY = frozenset({"memory"})
"""fsspec protocols whose files live in one process: no worker can read them."""


def is_url(arg: str) -> bool:
    """Whether an input argument is an fsspec URL (`SCHEME://...`, not `geryon://`)."""
    scheme, sep, _ = arg.partition("://")
    return bool(sep) and scheme != "geryon" and scheme.replace("+", "").replace("-", "").isalnum()


def open_url(url: str, *, shared: bool = True) -> "UrlFS":
    """The fsspec URL `url` (a directory, a file, or a glob) as a read-only FS.

    Args:
        shared: the disk will be read by other processes (Dask workers): refuse `memory://`.
    Raises:
        UnknownDisk: no backend for the scheme, or nothing at the URL; GeryonError: a shared
            job given a process-local URL.
    """
    scheme = url.partition("://")[0]
    if shared and scheme in LOCAL_ONLY:
        raise GeryonError(f"{url}: {scheme}:// is this process's memory: Dask workers cannot read it")
    try:
        import fsspec.core

        ufs, root = fsspec.core.url_to_fs(url)
    except ImportError as exc:   # fsspec itself, or the scheme's backend (s3fs, gcsfs, ...)
        raise UnknownDisk(f"{url}: cannot open: {_first_line(exc)}") from exc
    except (ValueError, OSError) as exc:   # an unknown protocol, bad options
        raise UnknownDisk(f"{url}: cannot open: {_first_line(exc)}") from exc
    return UrlFS(url, ufs, str(root))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class UrlFS(FS):
    """An fsspec filesystem's directory (or one file, or a glob's matches) as a read-only FS."""

    def __init__(self, url: str, ufs: Any, root: str) -> None:
        super().__init__()
        self.url, self.ufs = url, ufs
        self.root = root.rstrip("/") or "/"
        self._files: list[tuple[str, int]] | None = None

    def __repr__(self) -> str:
        return f"UrlFS({self.url!r})"

    def base_url(self) -> str:
        """The URL of the directory the paths of `files()` are relative to (call `files()` first)."""
        return str(self.ufs.unstrip_protocol(self.root))

    def _full(self, path: str) -> str:
        rel = path.strip("/")
        return posixpath.join(self.root, rel) if rel else self.root

    def files(self) -> list[tuple[str, int]]:
        """Every file under the URL with its size, sorted by path (`/name` relative to it).

        Raises:
            UnknownDisk: nothing is there, or it cannot be listed.
        """
        if self._files is not None:
            return self._files
        try:
            if any(c in self.root for c in "*?["):
                found = self.ufs.glob(self.root, detail=True)
                first = min(i for i in (self.root.find(c) for c in "*?[") if i >= 0)
                self.root = self.root[:first].rsplit("/", 1)[0] or "/"   # the directory before the pattern
            elif self.ufs.isfile(self.root):
                found = {self.root: self.ufs.info(self.root)}
                self.root = posixpath.dirname(self.root) or "/"
            elif self.ufs.isdir(self.root):
                found = self.ufs.find(self.root, detail=True)
            else:
                found = {}
        except (OSError, ValueError) as exc:
            raise UnknownDisk(f"{self.url}: cannot list: {_first_line(exc)}") from exc
        if not found:
            raise UnknownDisk(f"{self.url}: no such file or directory")
        prefix = self.root.rstrip("/") + "/"
        out = []
        for name, info in found.items():
            if info.get("type") == "directory":
                continue
            name = str(name)
            rel = name[len(prefix):] if name.startswith(prefix) else posixpath.basename(name)
            out.append(("/" + rel, int(info.get("size") or 0)))
        self._files = sorted(out)
        return self._files

    # -- pyfilesystem2's FS ---------------------------------------------------------------------
    def getinfo(self, path: str, namespaces: Any = None) -> Info:
        try:
            info = self.ufs.info(self._full(path))
        except FileNotFoundError as exc:
            raise fserrors.ResourceNotFound(path) from exc
        name = posixpath.basename(path.rstrip("/"))
        is_dir = info.get("type") == "directory"
        return Info({"basic": {"name": name, "is_dir": is_dir},
                     "details": {"size": int(info.get("size") or 0), "type": 1 if is_dir else 2}})

    def listdir(self, path: str) -> list[str]:
        try:
            names = self.ufs.ls(self._full(path), detail=False)
        except FileNotFoundError as exc:
            raise fserrors.ResourceNotFound(path) from exc
        return sorted(posixpath.basename(str(n).rstrip("/")) for n in names)

    def openbin(self, path: str, mode: str = "r", buffering: int = -1, **options: Any) -> Any:
        if any(c in mode for c in "wax+"):
            raise fserrors.ResourceReadOnly(path)
        try:
            return self.ufs.open(self._full(path), "rb")
        except FileNotFoundError as exc:
            raise fserrors.ResourceNotFound(path) from exc

    def makedir(self, path: str, permissions: Any = None, recreate: bool = False) -> Any:
        raise fserrors.ResourceReadOnly(path)

    def remove(self, path: str) -> None:
        raise fserrors.ResourceReadOnly(path)

    def removedir(self, path: str) -> None:
        raise fserrors.ResourceReadOnly(path)

    def setinfo(self, path: str, info: Any) -> None:
        raise fserrors.ResourceReadOnly(path)
