"""The taskfs file interface: sessions as a FUSE file system, as Inferno's taskfs served them.

    clone      opening it makes a session; reading returns its number (and a newline); the
               same descriptor is the session's ctl; closing it releases the session
    status     the aggregated `OS arch nodes` lines of the whole tree
    N/ctl      read: N; write: commands, one per line (below)
    N/stdio    write: input, to every instance (or dealt by line after `scatter`); closing the
               last descriptor open for writing ends the input. read: merged output, blocking
               until there is some; end of file once every instance has exited
    N/stderr   read: merged error output, likewise
    N/status   one line per local instance or immediate child: `index node state count cwd cmd`;
               `error MESSAGE` last if the last ctl command failed
    N/wait     read: blocks until every instance has exited; `index node status` per instance
    N/peers    the instances' addresses (`tcp!host!port`), one per line

ctl commands: `res N [os [arch]]` (`*` for any; N=0: one instance on the root itself),
`exec CMD...` (the rest of the line, run by the shell), `kill`, `killonclose`, `dir PATH`,
`scatter`. A refused command fails the write: EAGAIN for `no resources matching request`,
EINVAL otherwise, with the message logged and shown in `N/status`. Closing the clone
descriptor waits (in the background) for the command, then releases everything — at once,
killing it, after `killonclose`. Unmounting kills and releases every session.

Files are served with direct I/O and no attribute caching: every read reaches the server.
Offsets are honoured for ctl, status, wait and peers (so `cat` ends) and ignored for stdio
and stderr, which are streams. Session numbers grow and are never reused while mounted.
This module does not choose where sessions run: it is given a function that opens one
(`geryon.session`) and one that counts the tree (`geryon.taskfs.client.cluster_status`).
"""
from __future__ import annotations

import errno
import logging
import os
import shlex
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from geryon.errors import GeryonError
from geryon.taskfs.client import LoopThread, NoResources, Session

log = logging.getLogger(__name__)

SESSION_FILES = {"ctl": 0o666, "stdio": 0o666, "stderr": 0o444, "status": 0o444, "wait": 0o444, "peers": 0o444}
"""The files of a session directory, with their modes."""

TOP_FILES = {"clone": 0o666, "status": 0o444}
"""The files at the top of the mount."""

STREAMS = ("stdio", "stderr")


def fuse_error(code: int) -> OSError:
    """The error a FUSE operation raises to answer `-code` (mfusepy maps any OSError so)."""
    return OSError(code, os.strerror(code))


@dataclass
class Conversation:
    """One session as the file system sees it (Plan 9's word for a clone's directory)."""

    number: int
    session: Session
    scatter: bool = False
    error: str = ""
    writers: int = 0
    closing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Handle:
    """An open file."""

    kind: str                        # a SESSION_FILES name, or "top-status"
    conv: Conversation | None
    owner: bool = False              # the clone descriptor: closing it releases the session
    writer: bool = False
    snapshot: bytes = b""


class TaskFS:
    """The file system's operations; mount it with `mount`. (Operations it lacks are left
    to libfuse's defaults, so it needs no base class and `import mfusepy` waits for `mount`.)

    Args:
        open_session: opens a session (given the loop thread every session shares).
        counts_text: the aggregated status, as the top-level `status` file shows it.
        on_ready: called once mounted (the CLI prints a line).
    """

    use_ns = True

    def __init__(self, open_session: Callable[[LoopThread], Session], counts_text: Callable[[], str],
                 on_ready: Callable[[], None] = lambda: None) -> None:
        self.open_session, self.counts_text, self.on_ready = open_session, counts_text, on_ready
        self.runner: LoopThread | None = None
        self.convs: dict[int, Conversation] = {}
        self.handles: dict[int, Handle] = {}
        self._next_conv = 0
        self._next_fh = 1
        self._lock = threading.Lock()
        self._closers: list[threading.Thread] = []
        self._started = time.time_ns()
        self.mounted = False

    # -- life cycle -------------------------------------------------------------------------
    def init(self, path: str) -> None:
        self.runner = LoopThread("geryon-taskfs")
        self.mounted = True
        self.on_ready()

    def destroy(self, path: str) -> None:
        """Unmounted: kill and release every session."""
        for conv in list(self.convs.values()):
            conv.closing = True
            conv.session.close(kill=True)
        for t in self._closers:
            t.join()
        if self.runner is not None:
            self.runner.close()

    # -- names ------------------------------------------------------------------------------
    def _conv(self, name: str) -> Conversation:
        conv = self.convs.get(int(name)) if name.isdigit() else None
        if conv is None or conv.closing:
            raise fuse_error(errno.ENOENT)
        return conv

    def _lookup(self, path: str) -> tuple[str, Conversation | None]:
        parts = [p for p in path.split("/") if p]
        if not parts:
            return "/", None
        if len(parts) == 1 and parts[0] in TOP_FILES:
            return parts[0], None
        conv = self._conv(parts[0])
        if len(parts) == 1:
            return "dir", conv
        if len(parts) == 2 and parts[1] in SESSION_FILES:
            return parts[1], conv
        raise fuse_error(errno.ENOENT)

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        kind, conv = self._lookup(path)
        now = self._started
        base = {"st_uid": os.getuid(), "st_gid": os.getgid(), "st_atime": now, "st_mtime": now, "st_ctime": now}
        if kind in ("/", "dir"):
            return {**base, "st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2}
        mode = (SESSION_FILES if conv is not None else TOP_FILES)[kind]
        return {**base, "st_mode": stat.S_IFREG | mode, "st_nlink": 1, "st_size": 0}

    def readdir(self, path: str, fh: int) -> list[str]:
        kind, conv = self._lookup(path)
        if kind == "/":
            with self._lock:
                live = sorted(n for n, c in self.convs.items() if not c.closing)
            return [".", "..", *TOP_FILES, *(str(n) for n in live)]
        if kind == "dir":
            return [".", "..", *SESSION_FILES]
        raise fuse_error(errno.ENOTDIR)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        return 0                              # `echo cmd > ctl` truncates first: nothing to do

    # -- open and close ---------------------------------------------------------------------
    def _add(self, handle: Handle) -> int:
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self.handles[fh] = handle
        return fh

    def open(self, path: str, flags: int) -> int:
        kind, conv = self._lookup(path)
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY
        if kind in ("/", "dir"):
            raise fuse_error(errno.EISDIR)
        mode = (SESSION_FILES if conv is not None else TOP_FILES)[kind]
        if writing and not mode & 0o200:
            raise fuse_error(errno.EACCES)
        if kind == "clone":
            return self._add(Handle("ctl", self._clone(), owner=True))
        if conv is None:
            return self._add(Handle("top-status", None))
        handle = Handle(kind, conv, writer=writing and kind == "stdio")
        if handle.writer:
            with conv.lock:
                conv.writers += 1
        return self._add(handle)

    def _clone(self) -> Conversation:
        assert self.runner is not None
        try:
            session = self.open_session(self.runner)
        except GeryonError as exc:
            log.warning("clone: %s", exc)
            raise fuse_error(errno.EIO) from exc
        with self._lock:
            conv = Conversation(self._next_conv, session)
            self._next_conv += 1
            self.convs[conv.number] = conv
        return conv

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            handle = self.handles.pop(fh, None)
        if handle is None or handle.conv is None:
            return 0
        conv = handle.conv
        if handle.writer:
            with conv.lock:
                conv.writers -= 1
                last = conv.writers == 0
            if last and conv.session.executed:
                self._quietly(conv.session.stdin.close)
        if handle.owner:
            conv.closing = True
            closer = threading.Thread(target=self._release, args=(conv,), name=f"taskfs-close-{conv.number}")
            self._closers = [t for t in self._closers if t.is_alive()] + [closer]
            closer.start()
        return 0

    def _release(self, conv: Conversation) -> None:
        try:
            conv.session.close()
        except GeryonError as exc:
            log.warning("closing session %d: %s", conv.number, exc)
        finally:
            with self._lock:
                self.convs.pop(conv.number, None)

    @staticmethod
    def _quietly(fn: Callable[[], object]) -> None:
        try:
            fn()
        except GeryonError as exc:
            log.info("%s", exc)

    # -- reading ------------------------------------------------------------------------------
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        handle = self.handles.get(fh)
        if handle is None:
            raise fuse_error(errno.EBADF)
        if handle.kind in STREAMS:
            assert handle.conv is not None
            stream = handle.conv.session.stdout if handle.kind == "stdio" else handle.conv.session.stderr
            return stream.read(size)
        if offset == 0 or not handle.snapshot:
            handle.snapshot = self._contents(handle)
        return handle.snapshot[offset:offset + size]

    def _contents(self, handle: Handle) -> bytes:
        conv = handle.conv
        if conv is None:
            return self.counts_text().encode()
        s = conv.session
        if handle.kind == "ctl":
            return f"{conv.number}\n".encode()
        if handle.kind == "peers":
            return "".join(f"{i['addr']}\n" for i in s.instances).encode()
        if handle.kind == "status":
            lines = [f"{r.index} {r.node} {r.state.value} {r.count} {r.cwd or '-'} {r.cmd}\n" for r in s.status()]
            if conv.error:
                lines.append(f"error {conv.error}\n")
            return "".join(lines).encode()
        if handle.kind == "wait":
            try:
                statuses = s.wait(close_input=False)
            except GeryonError as exc:
                raise fuse_error(errno.EINVAL) from exc
            nodes = [i["node"] for i in s.instances]
            return "".join(f"{i} {nodes[i] if i < len(nodes) else '?'} {st}\n"
                           for i, st in enumerate(statuses)).encode()
        raise fuse_error(errno.EINVAL)

    # -- writing ------------------------------------------------------------------------------
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        handle = self.handles.get(fh)
        if handle is None or handle.conv is None:
            raise fuse_error(errno.EBADF)
        conv = handle.conv
        if handle.kind == "stdio":
            try:
                conv.session.stdin.write(data)
            except GeryonError as exc:
                raise fuse_error(errno.EPIPE) from exc
            return len(data)
        if handle.kind != "ctl":
            raise fuse_error(errno.EACCES)
        for line in data.decode(errors="replace").splitlines():
            if line.strip():
                self._ctl(conv, line.strip())
        return len(data)

    def _ctl(self, conv: Conversation, line: str) -> None:
        verb, _, rest = line.partition(" ")
        s = conv.session
        try:
            if verb == "res":
                args = rest.split()
                if not 1 <= len(args) <= 3 or not args[0].isdigit():
                    raise ValueError("usage: res N [os [arch]]")
                s.reserve(int(args[0]), *(args[1:]))
            elif verb == "exec":
                if not rest.strip():
                    raise ValueError("usage: exec CMD...")
                s.exec(rest, scatter=conv.scatter)
            elif verb == "kill":
                s.kill()
            elif verb == "killonclose":
                s.kill_on_close = True
            elif verb == "dir":
                s.chdir(shlex.split(rest)[0] if rest.strip() else "")
            elif verb == "scatter":
                conv.scatter = True
            else:
                raise ValueError(f"unknown ctl command {verb!r}")
            conv.error = ""
        except NoResources as exc:
            self._refuse(conv, line, str(exc), errno.EAGAIN)
        except (GeryonError, ValueError) as exc:
            self._refuse(conv, line, str(exc), errno.EINVAL)

    @staticmethod
    def _refuse(conv: Conversation, line: str, message: str, code: int) -> None:
        conv.error = message
        log.warning("session %d: %s: %s", conv.number, line, message)
        raise fuse_error(code)


def mount(fs: TaskFS, mountpoint: str, *, debug: bool = False) -> None:
    """Serve `fs` on `mountpoint` until it is unmounted (`fusermount3 -u`) or signalled.

    Raises:
        GeryonError: FUSE could not mount it.
    """
    try:
        import mfusepy
    except (ImportError, OSError) as exc:          # no libfuse on this machine
        raise GeryonError(f"taskfs needs libfuse 3 (the fuse3 package): {exc}") from exc
    try:
        mfusepy.FUSE(fs, mountpoint, foreground=True, debug=debug, fsname="geryon-taskfs", direct_io=True,
                     attr_timeout=0, entry_timeout=0, negative_timeout=0)
    except RuntimeError as exc:
        if fs.mounted:               # libfuse reports a loop ended by SIGTERM/SIGINT as an error
            log.info("taskfs on %s stopped by a signal", mountpoint)
            return
        raise GeryonError(f"cannot mount taskfs on {mountpoint}: FUSE error {exc}") from exc
