"""`RemoteFS`: a chunk disk on a node daemon, as a pyfilesystem2 `fs` filesystem.

Speaks the chunk service's HTTP routes (`geryon.node.chunkservice`) through
`geryon.net.connection` (stdlib `http.client`, kept-alive, every request signed).
Reads stream one GET (with `Range` after a seek); writes are spooled locally and sent in
one PUT when the file is closed (the files: `geryon.disks.remotefile`), so the node commits
them whole or not at all (`DiskFull` past the capacity). Also here: the `geryon://host:port/chunk` opener. Not here: serving chunks; turning a disk
name, a path or a URL into a disk (`geryon.disks.opendisk.open_disk`).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from fs import errors as fserrors
from fs.base import FS
from fs.info import Info
from fs.mode import Mode
from fs.opener import Opener

from geryon.errors import GeryonError, UnknownDisk
from geryon.disks.copies import copies_of, named_disks
from geryon.disks.filebatch import encode_batch
from geryon.disks.remotefile import DEFAULT_READ_BLOCK, RemoteReader, RemoteWriter
from geryon.net.connection import (DEFAULT_TIMEOUT, NodeConnection, NodeUnavailable, parse_node_url,
                                    raise_for)
from registry import tls
from registry.errors import RegistryError
from registry.secretfile import configured_secret, watch_secret

log = logging.getLogger(__name__)

__all__ = ["GeryonOpener", "NodeUnavailable", "RemoteFS", "disk_url", "parse_node_url",
           "library_secret", "set_default_secret"]

_default_secret: bytes | None = None


def set_default_secret(secret: bytes | None) -> None:
    """The secret used by `geryon://` URLs that name none (the CLI sets it at start-up)."""
    global _default_secret
    _default_secret = secret


def library_secret() -> bytes:
    """The secret for a caller that gave none: the CLI's (`set_default_secret`), else the
    configured one (`registry.secretfile.configured_secret`), never unsigned requests.

    Raises:
        GeryonError: no secret is configured (the message names `geryon init`).
    """
    if _default_secret is not None:
        return _default_secret
    try:
        return configured_secret()
    except RegistryError as exc:
        raise GeryonError(str(exc)) from exc


class RemoteFS(FS):
    """A chunk served by a node daemon (`geryon://host:port/chunk`).

    Args:
        url: the node, `http://host:port`.
        chunk: the chunk's name on that node.
        secret: the cluster secret (None: `library_secret`, as the CLI finds it:
            $GERYON_SECRET_FILE, else the default file).
        timeout: seconds per request.
    """

    _meta = {"case_insensitive": False, "invalid_path_chars": "\0", "max_path_length": None,
             "max_sys_path_length": None, "network": True, "read_only": False,
             "supports_rename": True, "thread_safe": True, "unicode_paths": True, "virtual": False}

    def __init__(self, url: str, chunk: str, secret: bytes | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        secret = secret if secret is not None else library_secret()
        super().__init__()
        self.url, self.chunk = url.rstrip("/"), chunk
        self._conn = NodeConnection(self.url, secret, timeout)
        self._base = f"/v1/chunks/{quote(chunk, safe='')}"

    @classmethod
    def from_url(cls, text: str, secret: bytes | None = None) -> RemoteFS:
        """From `geryon://host:port/chunk`."""
        url, chunk = parse_node_url(text)
        return cls(url, chunk, secret)

    def __repr__(self) -> str:
        return f"RemoteFS({self.url!r}, {self.chunk!r})"

    def __str__(self) -> str:
        return f"<remotefs '{self.geturl_base()}'>"

    def geturl_base(self) -> str:
        """This disk's `geryon://` URL."""
        return f"geryon://{self.url.split('://', 1)[1]}/{self.chunk}"

    def close(self) -> None:
        conn = getattr(self, "_conn", None)      # None: __init__ failed (FS.__del__ still closes)
        if conn is not None and not self.isclosed():
            conn.close()
        super().close()

    # -- calls ------------------------------------------------------------------------
    def _op(self, op: str, _shown: str | None = None, **args: Any) -> Any:
        """Call `op` on the node; `_shown` is the path as the caller gave it, for errors."""
        body = json.dumps({"op": op, "args": args}).encode()
        status, data = self._conn.request("POST", f"{self._base}/op", body,
                                          {"Content-Type": "application/json"})
        raise_for(status, data, self.url, _shown if _shown is not None else args.get("path") or args.get("src"))
        return json.loads(data)["result"]

    def _file_target(self, path: str, **query: str) -> str:
        extra = "".join(f"&{k}={quote(v)}" for k, v in query.items())
        return f"{self._base}/file?path={quote(path, safe='/')}{extra}"

    # -- the seven primitives -----------------------------------------------------------
    def getinfo(self, path: str, namespaces: Any = None) -> Info:
        _path = self.validatepath(path)
        return Info(self._op("getinfo", path, path=_path, namespaces=list(namespaces or ())))

    def listdir(self, path: str) -> list[str]:
        return self._op("listdir", path, path=self.validatepath(path))

    def makedir(self, path: str, permissions: Any = None, recreate: bool = False) -> Any:
        _path = self.validatepath(path)
        self._op("makedir", path, path=_path, recreate=recreate)
        return self.opendir(_path)

    def openbin(self, path: str, mode: str = "r", buffering: int = -1, **options: Any) -> BinaryIO:
        _mode = Mode(mode)
        _mode.validate_bin()
        _path = self.validatepath(path)
        if not _mode.writing:
            return RemoteReader(self, _path)  # type: ignore[return-value]
        self._op("checkwrite", path, path=_path, exclusive=_mode.exclusive)
        initial = b""
        if not _mode.truncate and not _mode.exclusive and (_mode.appending or _mode.reading):
            try:
                initial = self.readbytes(_path)
            except fserrors.ResourceNotFound:
                if not _mode.create:
                    raise
        elif not _mode.create:
            self.getinfo(_path)
        return RemoteWriter(self, _path, _mode, initial)  # type: ignore[return-value]

    def remove(self, path: str) -> None:
        self._op("remove", path, path=self.validatepath(path))

    def removedir(self, path: str) -> None:
        self._op("removedir", path, path=self.validatepath(path))

    def setinfo(self, path: str, info: Any) -> None:
        self._op("setinfo", path, path=self.validatepath(path), info=info)

    # -- faster versions of derived methods -----------------------------------------------
    def scandir(self, path: str, namespaces: Any = None, page: Any = None) -> Iterator[Info]:
        raws = self._op("scandir", path, path=self.validatepath(path), namespaces=list(namespaces or ()))
        infos = (Info(raw) for raw in raws)
        if page is not None:
            start, end = page
            return iter(list(infos)[start:end])
        return infos

    def removetree(self, dir_path: str) -> None:
        self._op("removetree", dir_path, path=self.validatepath(dir_path))

    def move(self, src_path: str, dst_path: str, overwrite: bool = False, preserve_time: bool = False) -> None:
        self._op("move", src=self.validatepath(src_path), dst=self.validatepath(dst_path), overwrite=overwrite)

    def copy(self, src_path: str, dst_path: str, overwrite: bool = False, preserve_time: bool = False) -> None:
        self._op("copy", src=self.validatepath(src_path), dst=self.validatepath(dst_path), overwrite=overwrite)

    def readbytes(self, path: str) -> bytes:
        _path = self.validatepath(path)
        status, data = self._conn.request("GET", self._file_target(_path))
        raise_for(status, data, self.url, _path)
        return data

    def read_range(self, path: str, start: int, end: int) -> bytes:
        """Bytes `start`..`end` of a file (fewer at its end), in one request read whole."""
        _path = self.validatepath(path)
        if end <= start:
            return b""
        status, data = self._conn.request("GET", self._file_target(_path), headers={"Range": f"bytes={start}-{end - 1}"})
        if status == 416:                                # at or past the end
            return b""
        raise_for(status, data, self.url, _path)
        return data if status == 206 else data[start:end]

    def download(self, path: str, file: Any, chunk_size: int | None = None, **options: Any) -> None:
        _path = self.validatepath(path)
        resp, conn = self._conn.open("GET", self._file_target(_path))
        try:
            if resp.status >= 300:
                raise_for(resp.status, resp.read(), self.url, _path)
            shutil.copyfileobj(resp, file, chunk_size or DEFAULT_READ_BLOCK)
        finally:
            self._conn.release(resp, conn)

    def put(self, path: str, data: bytes, exclusive: bool = False) -> None:
        """Write a whole file in one request (replace, or create only with `exclusive`)."""
        target = self._file_target(path, **({"exclusive": "1"} if exclusive else {}))
        status, body = self._conn.request("PUT", target, bytes(data))
        raise_for(status, body, self.url, path)

    def put_file(self, path: str, file: BinaryIO, exclusive: bool = False) -> int:
        """Write a file from `file`'s position to its end, streamed (never read whole); bytes sent.

        Reads it twice: once for the digest the signature declares, once to send it.
        """
        start = file.tell()
        digest = hashlib.sha256()
        while block := file.read(DEFAULT_READ_BLOCK):
            digest.update(block)
        length = file.tell() - start
        file.seek(start)
        target = self._file_target(path, **({"exclusive": "1"} if exclusive else {}))
        resp, conn = self._conn.open("PUT", target, file, digest=digest.hexdigest(), length=length)
        try:
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise NodeUnavailable(f"node {self.url}: {exc}") from exc
        self._conn.release(resp, conn)
        raise_for(resp.status, body, self.url, path)
        return length

    def put_files(self, files: Sequence[tuple[str, bytes]]) -> int:
        """Write many small whole files in one request, all or none (`geryon.disks.filebatch`)."""
        body = encode_batch([(self.validatepath(p), b) for p, b in files])
        status, data = self._conn.request("PUT", f"{self._base}/files", body)
        raise_for(status, data, self.url, files[0][0] if files else "/")
        return int(json.loads(data)["result"])

    def writebytes(self, path: str, contents: bytes) -> None:
        if not isinstance(contents, bytes):
            raise TypeError("contents must be bytes")
        self.put(self.validatepath(path), contents)

    def upload(self, path: str, file: Any, chunk_size: int | None = None, **options: Any) -> None:
        _path = self.validatepath(path)
        try:
            seekable = file.seekable()
        except (AttributeError, OSError):
            seekable = False
        if seekable:
            self.put_file(_path, file)
            return
        with tempfile.TemporaryFile() as spool:      # a pipe: spooled to disk, never to memory
            shutil.copyfileobj(file, spool, chunk_size or DEFAULT_READ_BLOCK)
            spool.seek(0)
            self.put_file(_path, spool)  # type: ignore[arg-type]

    def usage(self) -> dict[str, Any]:
        """The chunk's capacity, used and free bytes (None for unbounded), and `replica`."""
        return self._op("usage")

    def call(self, op: str, **args: Any) -> Any:
        """A chunk service operation beyond the `fs` API (`sums`, `pull`, `check`, ...)."""
        return self._op(op, **args)

    def files(self) -> list[tuple[str, int]]:
        """Every data file of the chunk with its size, sorted (one request, not a walk)."""
        return [(str(p), int(n)) for p, n in self._op("files")]

    def manifest(self, paths: Any = None) -> Any:
        """The chunk's checksum manifest (`geryon.disks.checksum`), or None when it has none;
        with `paths`, only their entries."""
        from geryon.disks.checksum import manifest_from_json

        data = self._op("manifest") if paths is None else self._op("manifest", paths=list(paths))
        return None if data is None else manifest_from_json(data, f"{self.geturl_base()}")


class GeryonOpener(Opener):
    """Opens `geryon://host:port/chunk[?secret_file=FILE]` as a `RemoteFS`: with no
    `secret_file`, the CLI's secret (`set_default_secret`), else the configured one."""

    protocols = ["geryon"]

    def open_fs(self, fs_url: str, parse_result: Any, writeable: bool, create: bool, cwd: str) -> FS:
        resource = parse_result.resource
        hostport, _, chunk = resource.partition("/")
        secret_file = (parse_result.params or {}).get("secret_file")
        secret = watch_secret(Path(secret_file)) if secret_file else _default_secret
        remote = RemoteFS(tls.base_url(hostport), chunk.strip("/"), secret)
        if parse_result.path:
            return remote.opendir(parse_result.path, factory=None)  # type: ignore[return-value]
        return remote


def disk_url(name: str, registry: Any) -> str | None:
    """The `geryon://` URL of the live chunk holding disk `name` (its master, else the first
    live replica), per the registry; None if unnamed.

    Raises:
        UnknownDisk: the disk is named but neither its master nor a replica is live.
    """
    copies = copies_of(name, named_disks(registry))
    if not copies:
        return None
    addr = next((c.get("addr") for c in copies if c.get("addr")), None)
    if addr:
        return addr
    entry = copies[0]
    raise UnknownDisk(f"{name}: chunk {entry.get('host')}!{entry.get('chunk')} is not live "
                      f"(no node serves it now)")
