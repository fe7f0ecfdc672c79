"""The session wire's client side: frames, the protocol's values, and the socket to a node.

`RemoteSession` opens one session on a node's `/v1/session` socket, sends it requests and
input, and relays the node's output and exits to a `Sink` (renumbered on the way by
`Offset`); the client API uses it for a session's root, and nodes for the groups they
delegate to their immediate children. Also here: the binary frame format (`pack_frame`,
`unpack_frame`), the timing defaults, an instance's `State` (and `group_state`), and the
session errors (`SessionError`, `NoResources`, `ProtocolError`), all re-exported by
`geryon.taskfs.client`. aiohttp is imported only when a session is first opened, so
`import geryon` stays fast. Not here: the synchronous API and output merging
(`geryon.taskfs.client`), the node's side of the protocol, which documents it
(`geryon.node.sessionservice`), one session's members on a node
(`geryon.taskfs.core`), planning and the tree (`geryon.taskfs.tree`).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from geryon.errors import GeryonError
from geryon.defaults import DEFAULT_SESSION_CONNECT_TIMEOUT as DEFAULT_CONNECT_TIMEOUT

if TYPE_CHECKING:
    import aiohttp
    from registry.channel import Channel

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT = 1.0
"""Seconds between heartbeats on session sockets and tree links (DESIGN: 1 s)."""

DEFAULT_DEAD_AFTER = 5.0
"""Seconds of silence after which the other end is taken for dead (DESIGN: 5 s)."""

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


class ProtocolError(GeryonError):
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
        self._ws: Channel | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.release_timeout = DEFAULT_RELEASE_TIMEOUT
        self.released_counts: Any = None

    async def connect(self) -> None:
        """Open the session; raises SessionError if unreachable or refused (wrong secret)."""
        import aiohttp

        from geryon.net.aio import node_http
        from registry.errors import RegistryError
        from registry.signer import Signer
        self._http = node_http(sock_connect=self.connect_timeout)
        try:
            self._ws = await asyncio.wait_for(Signer(self.secret).connect(
                self._http, self.url, "/v1/session", what=f"taskfs session on {self.node}",
                heartbeat=None, max_msg_size=MAX_FRAME), self.connect_timeout)
        except aiohttp.WSServerHandshakeError as exc:
            await self.close()
            if exc.status == 401:
                raise SessionError(f"node {self.node}: authentication failed (check the cluster secret)") from exc
            raise SessionError(f"node {self.node}: no session service ({exc.status})") from exc
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            await self.close()
            raise SessionError(f"node {self.node}: unreachable: {exc or type(exc).__name__}") from exc
        except RegistryError as exc:                 # the handshake failed, or not a node
            await self.close()
            raise SessionError(f"node {self.node}: {exc}") from exc
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
