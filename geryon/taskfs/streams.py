"""A session's output and statuses on the client: merged streams readable like pipes, scattered
input, status records (`geryon.taskfs.client` re-exports them).

`_Merge` is the client's sink (`geryon.taskfs.wire.Sink`): whole lines of every instance into
`stdout`/`stderr` (tagged `[index node] ` if asked), exit statuses counted; `OutputStream` is
readable from any thread; `Scatter` deals input lines round robin. Not here: the session and
its wire (`geryon.taskfs.client`, `geryon.taskfs.wire`).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from geryon.taskfs.wire import STDERR, STDOUT, State

__all__ = ["InstanceStatus", "OutputStream", "Scatter"]


@dataclass(frozen=True)
class InstanceStatus:
    """One status record: a local instance (count 1) or an immediate child's group."""

    index: int                        # its first instance's number
    count: int
    node: str
    state: State
    cwd: str
    cmd: str
    statuses: tuple[int | None, ...]  # exit statuses so far (None: still running)

    @classmethod
    def from_wire(cls, doc: dict[str, Any]) -> InstanceStatus:
        return cls(int(doc.get("index", 0)), int(doc.get("count", 0)), str(doc.get("node", "")),
                   State(doc.get("state", "Unreserved")), str(doc.get("cwd", "")), str(doc.get("cmd", "")),
                   tuple(doc.get("statuses") or ()))


class OutputStream:
    """Merged output, readable like a pipe from any thread: `read`, `readline`, iteration."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._eof = False
        self._cond = threading.Condition()

    def feed(self, data: bytes) -> None:
        with self._cond:
            self._buf += data
            self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, timeout: float | None = None) -> bytes:
        """Everything until the end (size < 0), or what is there, at most `size` bytes, once
        something is; b"" at the end. Raises TimeoutError after `timeout` seconds."""
        with self._cond:
            ready = (lambda: self._eof) if size < 0 else (lambda: self._eof or bool(self._buf))
            if not self._cond.wait_for(ready, timeout):
                raise TimeoutError(f"no output within {timeout}s")
            n = len(self._buf) if size < 0 else min(size, len(self._buf))
            data = bytes(self._buf[:n])
            del self._buf[:n]
            return data

    def readline(self, timeout: float | None = None) -> bytes:
        """One line with its newline (the last may lack it); b"" at the end."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._eof or b"\n" in self._buf, timeout):
                raise TimeoutError(f"no line within {timeout}s")
            cut = self._buf.find(b"\n") + 1 or len(self._buf)
            data = bytes(self._buf[:cut])
            del self._buf[:cut]
            return data

    def __iter__(self) -> Any:
        while line := self.readline():
            yield line

    @property
    def at_end(self) -> bool:
        """Whether every instance has exited and everything has been read."""
        with self._cond:
            return self._eof and not self._buf


class Scatter:
    """Deals input lines round robin over `n` instances; a partial line waits for its end."""

    def __init__(self, n: int) -> None:
        self.n, self.next = n, 0
        self._partial = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """(instance, bytes) pieces for `data`, lines kept in order per instance."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        out: dict[int, bytearray] = {}
        for line in lines:
            out.setdefault(self.next, bytearray()).extend(line + b"\n")
            self.next = (self.next + 1) % self.n
        return [(i, bytes(b)) for i, b in out.items()]

    def flush(self) -> list[tuple[int, bytes]]:
        """The last line, if it had no newline."""
        if not self._partial:
            return []
        piece, self._partial = [(self.next, self._partial)], b""
        self.next = (self.next + 1) % self.n
        return piece


class _Merge:
    """The client's sink: whole lines into the streams, exit statuses counted (loop thread only)."""

    def __init__(self, tag: bool) -> None:
        self.tag = tag
        self.stdout, self.stderr = OutputStream(), OutputStream()
        self.nodes: list[str] = []
        self.statuses: dict[int, int] = {}
        self.done = threading.Event()
        self._parts: dict[tuple[int, int], bytearray] = {}
        self._n: int | None = None

    def _emit(self, kind: int, index: int, data: bytes) -> None:
        if self.tag:
            node = self.nodes[index] if 0 <= index < len(self.nodes) else "?"
            data = b"".join(f"[{index} {node}] ".encode() + line
                            for line in data.splitlines(keepends=True))
        (self.stderr if kind == STDERR else self.stdout).feed(data)

    async def output(self, kind: int, index: int, data: bytes) -> None:
        part = self._parts.setdefault((kind, index), bytearray())
        part += data
        cut = part.rfind(b"\n") + 1
        if cut:
            self._emit(kind, index, bytes(part[:cut]))
            del part[:cut]

    async def exit(self, index: int, status: int) -> None:
        for kind in (STDOUT, STDERR):
            rest = self._parts.pop((kind, index), None)
            if rest:
                self._emit(kind, index, bytes(rest) + (b"\n" if self.tag else b""))
        self.statuses[index] = status
        self._check()

    def start(self, n: int) -> None:
        self._n = n
        self._check()

    def _check(self) -> None:
        if self._n is not None and len(self.statuses) >= self._n and not self.done.is_set():
            self.stdout.end()
            self.stderr.end()
            self.done.set()

    def end(self) -> None:
        self.stdout.end()
        self.stderr.end()
