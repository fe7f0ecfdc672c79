"""Signed HTTP requests to a node daemon, and the node's errors rebuilt on the client.

`NodeConnection` keeps a small pool of stdlib `http.client` connections to one node and
signs every request with the cluster secret (`registry.signer.Signer`); `raise_for`
turns a chunk service error answer back into the `fs` error (or `DiskFull`) the node
raised. Used by `geryon.disks.remote`; nothing here knows about files or commands.
"""
from __future__ import annotations

import http.client
import json
import logging
import threading
from typing import BinaryIO
from urllib.parse import urlsplit

from fs import errors as fserrors

from geryon.errors import DiskFull, GeryonError, UnknownDisk
from registry.errors import RegistryError
from registry.signer import Signer, is_instance_refusal
from registry import tls

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
"""Seconds a node may take to answer one request."""


class NodeUnavailable(GeryonError, fserrors.RemoteConnectionError):
    """A node daemon could not be reached, or refused us (bad secret)."""

    def __init__(self, msg: str) -> None:
        GeryonError.__init__(self, msg)
        # fs.errors.FSError formats `_msg` with the instance's attributes: keep it literal.
        self.msg, self.path, self.exc = msg, None, None
        self._msg = msg.replace("{", "{{").replace("}", "}}")

    def __str__(self) -> str:
        return self.msg

    def __repr__(self) -> str:
        return f"NodeUnavailable({self.msg!r})"

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return type(self), (self.msg,)


def parse_node_url(text: str) -> tuple[str, str]:
    """A chunk's address -> (`http(s)://host:port`, chunk).

    Accepts `geryon://host:port/chunk`, `http://host:port/chunk` and the chunk service's
    registry name `tcp!host!port!chunk` (registry names cannot hold `/`).
    """
    if text.startswith("tcp!"):
        parts = text.split("!")
        if len(parts) != 4 or not all(parts[1:]) or not parts[2].isdigit():
            raise UnknownDisk(f"{text}: not a chunk address (tcp!host!port!chunk)")
        host = f"[{parts[1]}]" if ":" in parts[1] else parts[1]
        return tls.base_url(f"{host}:{parts[2]}"), parts[3]
    split = urlsplit(text)
    chunk = split.path.strip("/")
    if split.scheme not in ("geryon", "http", "https") or not split.hostname or not split.port or not chunk:
        raise UnknownDisk(f"{text}: not a disk URL (geryon://host:port/chunk)")
    # geryon:// names no scheme: the cluster's (https when this process speaks TLS to it).
    scheme = tls.scheme() if split.scheme == "geryon" else split.scheme
    return f"{scheme}://{split.hostname}:{split.port}", chunk


class NodeConnection:
    """Signed HTTP requests to one node daemon, over a small pool of kept-alive connections."""

    def __init__(self, url: str, secret: bytes | None, timeout: float = DEFAULT_TIMEOUT) -> None:
        split = urlsplit(url)
        if not split.hostname or not split.port:
            raise UnknownDisk(f"{url}: not a node address (http://host:port)")
        self.url = url
        self.host, self.port = split.hostname, split.port
        self.secret = secret
        self.signer = Signer(secret)
        self.timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _get(self) -> http.client.HTTPConnection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return tls.http_connection(self.url, self.host, self.port, timeout=self.timeout, blocksize=1 << 20)

    def _put(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.append(conn)

    def headers(self, method: str, target: str, body: bytes = b"", extra: dict[str, str] | None = None,
                digest: str | None = None) -> dict[str, str]:
        """`extra` plus the signature headers for one request (just `extra` without a secret)."""
        try:
            return self.signer.headers_sync(self.url, method, target, body, headers=extra, digest=digest,
                                            timeout=self.timeout)
        except (OSError, http.client.HTTPException, RegistryError) as exc:
            raise NodeUnavailable(f"node {self.url}: {exc}") from exc

    def open(self, method: str, target: str, body: bytes | BinaryIO = b"",
             headers: dict[str, str] | None = None, *, digest: str | None = None,
             length: int | None = None,
             retry: bool = True) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        """Send a request; return the response, unread, and its connection (see `release`).

        `body` is bytes, or a binary file streamed from where it stands: then `length`
        bytes of it are sent and `digest` is their SHA-256 (for the signature). With `retry`
        a kept-alive connection the node closed is replaced once, and a node that restarted
        (it refuses a signature for its earlier run) is asked again once; without, the first
        answer or error is the caller's (a shuffle fetch: its failure is the driver's to retry).
        """
        stream = not isinstance(body, bytes | bytearray)
        start = body.tell() if stream else 0  # type: ignore[union-attr]
        extra = dict(headers or {})
        if stream:
            extra["Content-Length"] = str(length)
        fresh = restarted = False
        while True:
            all_headers = self.headers(method, target, b"" if stream else body, extra, digest)  # type: ignore[arg-type]
            if stream:
                body.seek(start)  # type: ignore[union-attr]
            conn = self._get()
            try:
                conn.request(method, target, body=body or None, headers=all_headers)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                conn.close()      # a kept-alive connection the node closed: try a fresh one once
                if fresh or not retry:
                    raise NodeUnavailable(f"node {self.url}: {exc}") from exc
                fresh = True
                continue
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise NodeUnavailable(f"node {self.url}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}") from exc
            if retry and not restarted and self.signer.secret is not None \
                    and is_instance_refusal(resp.status, resp.headers):
                conn.close()      # the node restarted since we learnt who it is: ask again, once
                self.signer.forget(self.url)
                restarted = True
                continue
            return resp, conn

    def release(self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection) -> None:
        """Give a connection back once its response is read (or close it if it is not)."""
        if resp.isclosed() and not resp.will_close:
            self._put(conn)
        else:
            conn.close()

    def request(self, method: str, target: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """Send a request and read the whole answer: (status, body)."""
        resp, conn = self.open(method, target, body, headers)
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise NodeUnavailable(f"node {self.url}: {exc}") from exc
        self.release(resp, conn)
        return resp.status, data

    def close(self) -> None:
        """Close idle connections; idempotent."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> NodeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raise_for(status: int, body: bytes, url: str, path: str | None = None) -> None:
    """Turn a chunk service error answer into the exception the node raised."""
    if status < 300:
        return
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {"error": body[:200].decode(errors="replace"), "kind": "error"}
    kind, msg = doc.get("kind"), str(doc.get("error"))
    if kind == "full":
        raise DiskFull(msg)
    if kind == "fs":
        cls = getattr(fserrors, str(doc.get("fserror")), None)
        epath = path if path is not None else doc.get("path")
        if isinstance(cls, type) and issubclass(cls, fserrors.ResourceError):
            raise cls(epath)
        if isinstance(cls, type) and issubclass(cls, fserrors.OperationFailed):
            raise cls(epath, msg=msg)
        raise fserrors.OperationFailed(epath, msg=msg)
    if kind == "escape":
        raise fserrors.IllegalBackReference(path or "")
    if status == 401:
        raise NodeUnavailable(f"node {url}: {msg} (check the cluster secret)")
    if kind == "nochunk":
        raise fserrors.ResourceNotFound(path or "/", msg=msg)
    raise fserrors.OperationFailed(path, msg=f"node {url}: {msg}")
