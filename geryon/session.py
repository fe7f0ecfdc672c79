"""taskfs sessions from Python: reserve instances, run one command on all, gather the results.

    with geryon.session(node="root") as s:       # the clone
        s.reserve(4, os="Linux")                  # res 4 Linux
        s.exec("hostname")                        # exec hostname
        print(s.stdout.read())                    # stdio, merged line by line
        print(s.wait())                           # every instance's exit status

Where a session runs: `node=NAME_OR_URL` opens it on that node (a tree root: it spreads
the instances over itself and its subtree); else with `registry=` the client is the root
and spreads them over the registry's cpus (each node's own cores only); with neither, it
runs embedded, on this machine's cores (the same code a node runs). `reserve(0)` runs one
instance *here*: on the node the session is open on, or on this machine.

Input is broadcast to every instance (`scatter=True` deals lines round robin instead);
output is merged line by line (`tag=True` prefixes `[index node] `). Every instance gets
`$GERYON_INSTANCE`, `$GERYON_NINSTANCES`, `$GERYON_PORT` (a port free for it) and its
siblings' addresses in `$GERYON_PEERS` and the file `$GERYON_PEERS_FILE`.

Release: leaving the `with` block waits for the command (unless `kill_on_close`, or the
block raised: then it is killed), then asks the node to release the session and waits
for its answer, which comes once every instance is killed and given back on every node,
recursively — so a new session can use them at once. A client that dies closes its
socket, which releases the same way; a frozen one misses heartbeats (gone after 5 s);
`geryon.session` is the `clone`, and nothing else holds a reservation. Output is
buffered without limit until read; input is queued on the nodes without limit. This module also holds the session wire's client side
(`RemoteSession`, used by nodes to delegate to children); it imports aiohttp only when a
session is first opened, so `import geryon` stays fast. Not here: the node's side
(`geryon.node.sessionservice`), planning and the tree (`geryon.node.tree`), FUSE
(`geryon.taskfs`).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from geryon.errors import GeryonError

if TYPE_CHECKING:
    import aiohttp

    from geryon.node.tree import Child, Count

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_HEARTBEAT = 1.0
"""Seconds between heartbeats on session sockets and tree links (DESIGN: 1 s)."""

DEFAULT_DEAD_AFTER = 5.0
"""Seconds of silence after which the other end is taken for dead (DESIGN: 5 s)."""

DEFAULT_CONNECT_TIMEOUT = 5.0
"""Seconds to open a session on a node before giving up on it."""

DEFAULT_RELEASE_TIMEOUT = 30.0
"""Seconds to wait for a node to confirm a release before just closing the socket."""

MAX_FRAME = 16 << 20
"""Largest WebSocket message accepted, in bytes."""

CHUNK = 1 << 20
"""Input is sent in pieces of at most this many bytes."""

LOST_STATUS = 255
"""Exit status of an instance whose node was lost before it exited."""

ALL = -1
"""Frame index meaning every instance."""

STDIN, STDOUT, STDERR = 0, 1, 2
"""First byte of a binary frame."""

_HEAD = struct.Struct(">Bi")


class State(str, Enum):
    """An instance's state, as taskfs's `status` file names them."""

    UNRESERVED = "Unreserved"
    OPEN = "Open"
    EXECUTE = "Execute"
    DONE = "Done"
    FAIL = "Fail"


class SessionError(GeryonError):
    """A session request cannot be carried out (exec before reserve, node lost, ...)."""


class NoResources(SessionError):
    """A reservation cannot be met in full (everything taken for it was given back)."""


class ProtocolError(Exception):
    """A peer sent something the session protocol does not allow (the session ends)."""


def pack_frame(kind: int, index: int, data: bytes) -> bytes:
    return _HEAD.pack(kind, index) + data


def unpack_frame(frame: bytes) -> tuple[int, int, bytes]:
    """(kind, index, data); raises ProtocolError on a frame shorter than its header."""
    if len(frame) < _HEAD.size:
        raise ProtocolError("binary frame shorter than its header")
    kind, index = _HEAD.unpack_from(frame)
    return kind, index, frame[_HEAD.size:]


def group_state(executed: bool, count: int, statuses: dict[int, int]) -> State:
    """The state of `count` instances given the exit statuses seen so far."""
    if count and len(statuses) >= count:
        return State.DONE if not any(statuses.values()) else State.FAIL
    return State.EXECUTE if executed else State.OPEN


def display(cmd: str | Sequence[str]) -> str:
    return cmd if isinstance(cmd, str) else " ".join(cmd)


class Sink(Protocol):
    """Where a session's output and exits go (a socket, a client's streams, a parent)."""

    async def output(self, kind: int, index: int, data: bytes) -> None: ...

    async def exit(self, index: int, status: int) -> None: ...


class Offset:
    """A sink that renumbers: index i becomes `offset + i`."""

    def __init__(self, sink: Sink, offset: int) -> None:
        self.sink, self.offset = sink, offset

    async def output(self, kind: int, index: int, data: bytes) -> None:
        await self.sink.output(kind, self.offset + index, data)

    async def exit(self, index: int, status: int) -> None:
        await self.sink.exit(self.offset + index, status)


# -- the wire's client side ----------------------------------------------------------------
class RemoteSession:
    """A session on a node over its `/v1/session` socket: a parent's child group, or a client's root.

    Args:
        url: the node's `http://host:port`.
        secret: signs the handshake (None: unsigned).
        sink: where its instances' output and exits go (numbered as the node numbers them).
        name: the node's name, for messages and status records.
    """

    def __init__(self, url: str, secret: bytes | None, sink: Sink, *, name: str | None = None,
                 heartbeat: float = DEFAULT_HEARTBEAT, dead_after: float = DEFAULT_DEAD_AFTER,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        self.url, self.secret, self.sink = url.rstrip("/"), secret, sink
        self.node = name or url
        self.heartbeat, self.dead_after, self.connect_timeout = heartbeat, dead_after, connect_timeout
        self.addresses: list[dict[str, str]] = []
        self.count = 0
        self.cwd, self.cmd = "", ""
        self.executed = False
        self.statuses: dict[int, int] = {}
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.release_timeout = DEFAULT_RELEASE_TIMEOUT
        self.released_counts: Any = None

    async def connect(self) -> None:
        """Open the session; raises SessionError if unreachable or refused (wrong secret)."""
        import aiohttp

        from registry.auth import sign_headers
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None,
                                                                         sock_connect=self.connect_timeout))
        headers = sign_headers(self.secret, "GET", "/v1/session") if self.secret is not None else {}
        try:
            self._ws = await asyncio.wait_for(self._http.ws_connect(
                self.url + "/v1/session", headers=headers, heartbeat=None, max_msg_size=MAX_FRAME),
                self.connect_timeout)
        except aiohttp.WSServerHandshakeError as exc:
            await self.close()
            if exc.status == 401:
                raise SessionError(f"node {self.node}: authentication failed (check the cluster secret)") from exc
            raise SessionError(f"node {self.node}: no session service ({exc.status})") from exc
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            await self.close()
            raise SessionError(f"node {self.node}: unreachable: {exc or type(exc).__name__}") from exc
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._ping())]

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send a request, wait for its answer; raises SessionError (NoResources) if refused or lost."""
        if self._ws is None or self._ws.closed:
            raise SessionError(f"node {self.node}: session lost")
        self._next += 1
        rid = self._next
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            await self._ws.send_str(json.dumps({"op": op, "id": rid, **fields}))
            reply = await future
        except ConnectionError as exc:
            raise SessionError(f"node {self.node}: session lost") from exc
        finally:
            self._pending.pop(rid, None)
        if not reply.get("ok"):
            err = str(reply.get("error") or "refused")
            raise (NoResources if err.startswith("no resources") else SessionError)(err)
        return reply

    async def reserve(self, n: int, os_: str | None, arch: str | None, pick: str,
                      here: bool) -> list[dict[str, str]]:
        reply = await self.request("reserve", n=n, os=os_, arch=arch, pick=pick, here=here)
        instances = reply.get("instances")
        if not isinstance(instances, list):
            raise SessionError(f"node {self.node}: bad reserve answer")
        self.addresses = [{"node": str(i.get("node", "")), "addr": str(i.get("addr", ""))} for i in instances]
        self.count = len(self.addresses)
        return self.addresses

    async def chdir(self, path: str) -> None:
        await self.request("chdir", path=path)
        self.cwd = path

    async def exec(self, cmd: str | Sequence[str], env: dict[str, str],
                   peers: Sequence[dict[str, str]] | None, base: int) -> None:
        await self.request("exec", cmd=cmd if isinstance(cmd, str) else list(cmd), env=env,
                           peers=list(peers) if peers is not None else None, base=base)
        self.executed, self.cmd = True, display(cmd)

    async def kill(self) -> None:
        with contextlib.suppress(SessionError):
            await self.request("kill")

    async def status(self) -> list[dict[str, Any]]:
        records = (await self.request("status")).get("records")
        return records if isinstance(records, list) else []

    def record(self) -> dict[str, Any]:
        """This group as one status record (its state from the exits seen)."""
        return {"count": self.count, "node": self.node,
                "state": group_state(self.executed, self.count, self.statuses).value,
                "cwd": self.cwd, "cmd": self.cmd,
                "statuses": [self.statuses.get(i) for i in range(self.count)], "pids": []}

    async def write(self, data: bytes, target: int) -> None:
        if self._ws is None or self._ws.closed:
            return
        for start in range(0, max(len(data), 1), CHUNK):
            with contextlib.suppress(ConnectionError):
                await self._ws.send_bytes(pack_frame(STDIN, target, data[start:start + CHUNK]))

    async def eof(self, target: int) -> None:
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionError):
                await self._ws.send_str(json.dumps({"op": "eof", "target": target}))

    async def _ping(self) -> None:
        assert self._ws is not None
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not self._ws.closed:
                await asyncio.sleep(self.heartbeat)
                await self._ws.send_str('{"op": "ping"}')

    async def _read(self) -> None:
        import aiohttp
        assert self._ws is not None
        error = "session lost"
        try:
            while True:
                msg = await self._ws.receive(timeout=self.dead_after)   # the node pings too
                if msg.type == aiohttp.WSMsgType.BINARY:
                    kind, index, data = unpack_frame(msg.data)
                    await self.sink.output(kind, index, data)
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                doc = json.loads(msg.data)
                if "re" in doc:
                    future = self._pending.pop(doc["re"], None)
                    if future is not None and not future.done():
                        future.set_result(doc)
                elif doc.get("op") == "exit":
                    index, status = int(doc["index"]), int(doc["status"])
                    self.statuses[index] = status
                    await self.sink.exit(index, status)
                elif doc.get("op") == "error":
                    error = str(doc.get("error"))
        except asyncio.TimeoutError:
            error = f"silent for {self.dead_after:g}s"
        except (ProtocolError, ValueError, KeyError, TypeError, AttributeError) as exc:
            error = f"bad message: {exc}"
        finally:
            if not self._closing:
                log.warning("session on %s ended: %s", self.node, error)
            await self._lost(error)

    async def _lost(self, error: str) -> None:
        if self._ws is not None:
            await self._ws.close()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(SessionError(f"node {self.node}: {error}"))
        self._pending.clear()
        for i in range(self.count):
            if i not in self.statuses:          # their node is gone, or we left: so are they
                self.statuses[i] = LOST_STATUS
                if self.executed and not self._closing:     # someone may be waiting for them
                    with contextlib.suppress(Exception):
                        await self.sink.exit(i, LOST_STATUS)

    async def close(self) -> None:
        """Release everything of this session on the node (and, through it, on its subtree),
        waiting for it to be done, then close the socket; idempotent."""
        first, self._closing = not self._closing, True
        if first and self._ws is not None and not self._ws.closed:
            try:
                reply = await asyncio.wait_for(self.request("release"), self.release_timeout)
                self.released_counts = reply.get("counts")
            except (SessionError, asyncio.TimeoutError) as exc:     # closing the socket releases too
                log.info("release on %s: %s", self.node, exc or "timed out")
        if self._ws is not None:
            await self._ws.close()
        if self._tasks:
            reader, pinger = self._tasks
            pinger.cancel()
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(reader), 2.0)
            reader.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None


# -- the synchronous API ---------------------------------------------------------------------
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


class LoopThread:
    """An asyncio loop in a thread of its own, serving synchronous callers; `close()` joins it."""

    def __init__(self, name: str = "geryon-session") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.closed = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_default_executor())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self.closed:
            coro.close()
            raise SessionError("session is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class InputStream:
    """A session's stdin: `write` broadcasts (or scatters, after `exec(scatter=True)`); `close` ends it."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self.closed = False

    def write(self, data: bytes | str) -> int:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        if self.closed:
            raise SessionError("write to a closed stdin")
        self._session._input(raw)
        return len(raw)

    def flush(self) -> None:
        """Writes are sent at once; nothing to do."""

    def close(self) -> None:
        """End of input for every instance (scattered input's last partial line is sent first)."""
        if not self.closed:
            self.closed = True
            self._session._end_input()


class Session:
    """One taskfs session; make it with `geryon.session(...)`, a context manager.

    Attributes:
        stdin, stdout, stderr: see `InputStream` and `OutputStream`.
        kill_on_close: kill running instances on close instead of waiting for them.
    """

    def __init__(self, backend: Any, merge: _Merge, runner: LoopThread, *, own_runner: bool,
                 pick: str = "spread", kill_on_close: bool = False, cleanup: str | None = None) -> None:
        self._backend, self._merge, self._runner = backend, merge, runner
        self._own_runner, self._cleanup = own_runner, cleanup
        self.pick, self.kill_on_close = pick, kill_on_close
        self.stdin = InputStream(self)
        self.stdout, self.stderr = merge.stdout, merge.stderr
        self.instances: list[dict[str, str]] = []
        self._scatter: Scatter | None = None
        self._executed = False
        self._closed = False

    @property
    def executed(self) -> bool:
        """Whether `exec` has started the command."""
        return self._executed

    def reserve(self, n: int, os: str | None = None, arch: str | None = None, *,
                pick: str | None = None) -> list[str]:
        """Reserve `n` instances on cpus matching `os`/`arch` (None or `*`: any); n=0 runs here.

        Returns:
            The instances' addresses (`tcp!host!port`), in instance order.
        Raises:
            NoResources: `no resources matching request` (nothing stays reserved anywhere).
        """
        self.instances = self._runner.call(self._backend.reserve(n, os, arch, pick or self.pick, False))
        self._merge.nodes = [i["node"] for i in self.instances]
        return [i["addr"] for i in self.instances]

    def chdir(self, path: str) -> None:
        """Run the command in `path` (on every node; relative to each instance's run directory)."""
        self._runner.call(self._backend.chdir(path))

    def exec(self, cmd: str | Sequence[str], *, scatter: bool = False, env: dict[str, str] | None = None) -> None:
        """Start `cmd` (a shell string or an argv) on every reserved instance."""
        async def start() -> None:
            await self._backend.exec(cmd, dict(env or {}), None, 0)
            self._merge.start(len(self.instances))
        self._scatter = Scatter(len(self.instances)) if scatter and self.instances else None
        self._runner.call(start())
        self._executed = True

    def _input(self, data: bytes) -> None:
        if self._scatter is None:
            self._runner.call(self._backend.write(data, ALL))
            return
        for target, piece in self._scatter.feed(data):
            self._runner.call(self._backend.write(piece, target))

    def _end_input(self) -> None:
        if self._scatter is not None:
            for target, piece in self._scatter.flush():
                self._runner.call(self._backend.write(piece, target))
        self._runner.call(self._backend.eof(ALL))

    def status(self) -> list[InstanceStatus]:
        """One record per local instance or immediate child (`Unreserved` before `reserve`)."""
        return [InstanceStatus.from_wire(r) for r in self._runner.call(self._backend.status())]

    def wait(self, timeout: float | None = None, *, close_input: bool = True) -> list[int]:
        """Close stdin (unless told not to), wait for every instance; their exit statuses in
        instance order.

        Raises:
            SessionError: nothing executed, or still running after `timeout` seconds.
        """
        if not self._executed:
            raise SessionError("wait before exec: nothing is running")
        if close_input:
            self.stdin.close()
        if not self._merge.done.wait(timeout):
            raise SessionError(f"instances still running after {timeout}s")
        return [self._merge.statuses.get(i, LOST_STATUS) for i in range(len(self.instances))]

    def kill(self) -> None:
        """Kill every running instance (statuses become 128+15, or 128+9)."""
        self._runner.call(self._backend.kill())

    def close(self, *, kill: bool | None = None) -> None:
        """Release every instance on every node; idempotent. Waits for the command first,
        unless `kill` (default: `kill_on_close`)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._executed and not self._merge.done.is_set():
                if kill if kill is not None else self.kill_on_close:
                    self._runner.call(self._backend.kill())
                else:
                    self.stdin.close()
                    self._merge.done.wait()
        finally:
            with contextlib.suppress(SessionError):
                self._runner.call(self._backend.close())
            self._merge.end()
            if self._own_runner:
                self._runner.close()
            if self._cleanup:
                shutil.rmtree(self._cleanup, ignore_errors=True)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(kill=True if exc_type is not None else None)


def _node_url(node: str, registry: Any) -> str:
    from geryon.node.tree import lookup_node, parent_url
    return parent_url(node) or lookup_node(node, registry)


async def _registry_children(registry: Any) -> list[Child]:
    from geryon.node.tree import Child, Count
    from geryon.pick import CpuInfo
    from geryon.rcpuclient import CPU_QUERY
    services = await asyncio.get_running_loop().run_in_executor(None, registry.find, CPU_QUERY)
    cpus = sorted((CpuInfo.from_service(s) for s in services), key=lambda c: (c.host, c.name))
    return [Child(c.host or c.name, c.url, (Count(c.os, c.arch, 1, c.ncpu, c.ncpu),), c.load, c.ncpu,
                  c.mem_free, c.mem_total) for c in cpus if c.url]


def session(*, node: str | None = None, registry: Any = None, secret: bytes | None = None,
            tag: bool = False, kill_on_close: bool = False, pick: str = "spread",
            runner: LoopThread | None = None, heartbeat: float = DEFAULT_HEARTBEAT,
            connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Session:
    """Open a session (taskfs's `clone`).

    Args:
        node: a node's name or `http://host:port`: the session's root (names need `registry`).
        registry: a registry client: without `node`, spread over its cpus from here.
        secret: the cluster secret.
        tag: prefix output lines with `[index node] `.
        kill_on_close: kill running instances on close instead of waiting for them.
        pick: `spread` (the taskfs rule) or `load` (least loaded first, dsh's score).
        runner: a loop thread to share between sessions (default: one per session).
    Raises:
        SessionError: the node is unknown, unreachable, or refuses the secret.
    """
    merge = _Merge(tag)
    own = runner is None
    loop = runner or LoopThread()
    cleanup = None
    try:
        if node is not None:
            url = _node_url(node, registry)
            backend: Any = RemoteSession(url, secret, merge, name=node, heartbeat=heartbeat,
                                         connect_timeout=connect_timeout)
            loop.call(backend.connect())
        else:
            from geryon.node.load import read_host_facts
            from geryon.node.sessionservice import SessionCore, Slots, local_host
            cleanup = tempfile.mkdtemp(prefix="geryon-session-")
            facts = read_host_facts()

            async def kids() -> list[Child]:
                return await _registry_children(registry) if registry is not None else []

            async def make() -> Any:
                return SessionCore(name=os.uname().nodename, host=local_host(registry is not None),
                                   work_dir=cleanup, slots=Slots(facts), offer_local=registry is None,
                                   children=kids, child_here=True, secret=secret, sink=merge,
                                   facts=read_host_facts, heartbeat=heartbeat, connect_timeout=connect_timeout)
            backend = loop.call(make())
    except BaseException:
        if own:
            loop.close()
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)
        raise
    return Session(backend, merge, loop, own_runner=own, pick=pick, kill_on_close=kill_on_close,
                   cleanup=cleanup)


def cluster_status(*, node: str | None = None, registry: Any = None, secret: bytes | None = None) -> list[Count]:
    """The aggregated `os arch` counts: a node's whole tree, the registry's cpus, or this machine.

    Raises:
        GeryonError: the node is unknown or unreachable.
    """
    from geryon.node.tree import Count, add_counts
    if node is not None:
        from geryon.node.connection import NodeConnection
        url = _node_url(node, registry)
        with NodeConnection(url, secret) as conn:
            status, body = conn.request("GET", "/v1/tree")
        if status != 200:
            raise GeryonError(f"node {node}: {body[:200].decode(errors='replace')}")
        return [Count.from_wire(c) for c in json.loads(body)["counts"]]
    if registry is not None:
        from geryon.pick import CpuInfo
        from geryon.rcpuclient import CPU_QUERY
        cpus = [CpuInfo.from_service(s) for s in registry.find(CPU_QUERY)]
        return add_counts([Count(c.os, c.arch, 1, c.ncpu, c.ncpu) for c in cpus])
    from geryon.node.load import read_host_facts
    facts = read_host_facts()
    return [Count(facts.os, facts.arch, 1, facts.ncpu, facts.ncpu)]
