"""taskfs sessions on a node: reserve instances, fan a command out, relay its I/O, release.

Routes (signed with the cluster secret, like every node route):
  GET /v1/session     WebSocket: one session (protocol below); closing it releases everything
  GET /v1/sessions    JSON: sessions open here, slots reserved, pids running
  GET /v1/tree        JSON: this node, its immediate children, aggregated `os arch` counts
  GET /v1/tree/join   WebSocket: an immediate child's link (`geryon.node.tree`)

An **instance** is one command process. A node offers one instance slot per core it
serves (`--cpus`); a reservation takes slots here and, on a node with children, delegates
the rest to its *immediate* children, each through a session of its own (which delegates
further). A session's members are therefore its local instances and one group per child;
instances are numbered 0..N-1 in member order, and a child's frames are renumbered on the
way up. A reservation that cannot be met in full is rolled back (every slot given back,
every child session closed) and answered `no resources matching request`.

Protocol (text frames are JSON objects; binary frames are `kind` (1 byte), `index`
(int32, big-endian; -1 = every instance) and the bytes):
  client -> node, answered `{"re": id, "ok": true, ...}` or `{"re": id, "ok": false, "error": ...}`:
    {"op": "reserve", "id", "n", "os", "arch", "pick": "spread"|"load", "here": bool}
        -> "instances": [{"node", "addr": "tcp!host!port"}, ...]   (`here`: this node's cores only)
    {"op": "chdir", "id", "path"}   {"op": "exec", "id", "cmd", "env", "peers", "base"}
    {"op": "kill", "id"}            {"op": "status", "id"} -> "records": [...]
    {"op": "release", "id"} -> "counts": [...]   (answered once everything is released, recursively;
        the session then ends. Its counts let the parent see the freed slots at once.)
  client -> node, unanswered: {"op": "eof", "target"}, {"op": "ping"}, binary kind 0 (stdin)
  node -> client: binary kind 1 (stdout) / 2 (stderr); {"op": "exit", "index", "status"};
    {"op": "ping"} every heartbeat (a client takes a node silent for `dead_after` as lost: its
    instances exit 255); {"op": "error", "error"} just before ending a session over a protocol error.

Each instance runs in a run directory of its own under the node's work directory (its
cwd unless `dir` says otherwise; removed on release), in its own process group, with
$GERYON_NODE, $GERYON_INSTANCE, $GERYON_NINSTANCES, $GERYON_PORT, $GERYON_PEERS and
$GERYON_PEERS_FILE (`peers` in the run directory). A command that cannot start exits 127.

Release guarantees: the session ends — processes killed (SIGTERM, then SIGKILL after a
grace), slots given back, child sessions closed (so recursively) — when its socket closes
for any reason (the client exited or was killed: the kernel closes the socket), when the
client is silent for `dead_after` seconds (frozen; clients ping every `heartbeat`), on a
protocol error, and when the node shuts down. Not here: the client API
(`geryon.session`), planning and the tree link (`geryon.node.tree`).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from geryon.errors import GeryonError
from geryon.node.load import HostFacts, LoadSource
from geryon.node.tree import (PICKS, Candidate, Child, Children, Count, ParentLink, add_counts, lookup_node,
                              matches, parent_url, plan, serve_child)
from geryon.session import (ALL, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT, MAX_FRAME,
                            STDERR, STDIN, STDOUT, NoResources, Offset, ProtocolError, RemoteSession,
                            SessionError, Sink, State, display, group_state, pack_frame, unpack_frame)
from shell.block import command_argv

log = logging.getLogger(__name__)

DEFAULT_KILL_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL when instances are killed."""


def exit_status(returncode: int) -> int:
    """A shell-style exit status: 128+N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def free_port() -> int:
    """A TCP port free now, for an instance to listen on ($GERYON_PORT; racy, as MPI launchers are)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def local_host(routed: bool) -> str:
    """The address instances on this machine are reached at (loopback unless `routed`)."""
    if not routed:
        return "127.0.0.1"
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class Slots:
    """This machine's instance slots: one per core served; `changed` is called on every change."""

    def __init__(self, facts: HostFacts, changed: Callable[[], None] = lambda: None) -> None:
        self.os, self.arch, self.ncpu = facts.os, facts.arch, facts.ncpu
        self.reserved = 0
        self._changed = changed

    @property
    def free(self) -> int:
        return self.ncpu - self.reserved

    def take(self, n: int) -> bool:
        if n > self.free:
            return False
        self.reserved += n
        if n:
            self._changed()
        return True

    def give(self, n: int) -> None:
        self.reserved = max(0, self.reserved - n)
        if n:
            self._changed()

    def count(self) -> Count:
        return Count(self.os, self.arch, 1, self.ncpu, self.free)


async def kill_group(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), wait)


class LocalInstance:
    """One command process on this machine, in its own run directory and process group.

    Input is queued and fed by a task of its own, so a command that does not read its
    stdin never stalls the session's socket (the queue is not bounded).
    """

    count = 1

    def __init__(self, node: str, host: str, run_dir: str, sink: Sink, kill_grace: float) -> None:
        self.node, self.run_dir, self.sink, self.kill_grace = node, run_dir, sink, kill_grace
        self.port = free_port()
        self.addresses = [{"node": node, "addr": f"tcp!{host}!{self.port}"}]
        os.makedirs(run_dir)
        self.cwd, self.cmd = run_dir, ""
        self.proc: asyncio.subprocess.Process | None = None
        self.status: int | None = None
        self.executed = False
        self._input: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def record(self) -> dict[str, Any]:
        statuses = {0: self.status} if self.status is not None else {}
        return {"count": 1, "node": self.node, "state": group_state(self.executed, 1, statuses).value,
                "cwd": self.cwd, "cmd": self.cmd, "statuses": [self.status],
                "pids": [self.proc.pid] if self.proc and self.status is None else []}

    async def chdir(self, path: str) -> None:
        where = os.path.join(self.run_dir, path)
        if not os.path.isdir(where):
            raise SessionError(f"{self.node}: {path}: no such directory")
        self.cwd = os.path.normpath(where)

    async def exec(self, cmd: str | Sequence[str], env: dict[str, str], peers: Sequence[dict[str, str]],
                   base: int) -> None:
        self.executed, self.cmd = True, display(cmd)
        peers_file = os.path.join(self.run_dir, "peers")
        addrs = [str(p.get("addr", "")) for p in peers]
        with open(peers_file, "w") as f:
            f.write("".join(f"{a}\n" for a in addrs))
        full = {**os.environ, **env, "GERYON_NODE": self.node, "GERYON_INSTANCE": str(base),
                "GERYON_NINSTANCES": str(len(addrs)), "GERYON_PORT": str(self.port),
                "GERYON_PEERS": " ".join(addrs), "GERYON_PEERS_FILE": peers_file}
        argv = command_argv(cmd)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, cwd=self.cwd, env=full, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            await self.sink.output(STDERR, 0, f"geryon: {argv[0]}: {exc.strerror or exc}\n".encode())
            await self._finish(127)
            return
        log.info("instance pid %d on %s: %s", self.proc.pid, self.node, self.cmd)
        self._tasks = [asyncio.create_task(self._run(self.proc)), asyncio.create_task(self._feed(self.proc))]

    async def _run(self, proc: asyncio.subprocess.Process) -> None:
        async def pump(stream: asyncio.StreamReader | None, kind: int) -> None:
            assert stream is not None
            while block := await stream.read(64 * 1024):
                await self.sink.output(kind, 0, block)
        await asyncio.gather(pump(proc.stdout, STDOUT), pump(proc.stderr, STDERR))
        await self._finish(exit_status(await proc.wait()))

    async def _feed(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None
        try:
            while (data := await self._input.get()) is not None:
                proc.stdin.write(data)
                await proc.stdin.drain()
            proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass                                   # the command stopped reading, as with a pipe

    async def _finish(self, status: int) -> None:
        self.status = status
        await self.sink.exit(0, status)

    async def write(self, data: bytes, target: int) -> None:
        if data:
            self._input.put_nowait(data)

    async def eof(self, target: int) -> None:
        self._input.put_nowait(None)

    async def kill(self) -> None:
        if self.proc is not None:
            await kill_group(self.proc, self.kill_grace)

    async def close(self) -> None:
        await self.kill()
        if self._tasks:
            self._tasks[1].cancel()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 5.0)
        await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, self.run_dir, True)


Member = LocalInstance | RemoteSession


class SessionCore:
    """One session's members and life cycle; the same code serves a node and an embedded client.

    Args:
        name: this node's name (the client's host name when the client is the root).
        host: the address instances here are reached at (peers' `tcp!host!port`).
        work_dir: run directories go under `work_dir/sessions`.
        slots: this machine's instance slots (None: nothing runs here).
        offer_local: use `slots` for n > 0 (False: only `reserve(0)`, "run here", does).
        children: the candidates to delegate to now (immediate children, or registry cpus).
        child_here: ask children to use only their own cores (they are registry cpus, not subtrees).
        secret: signs sessions opened on children.
        sink: where output and exits go, numbered 0..N-1.
    """

    def __init__(self, *, name: str, host: str, work_dir: str, slots: Slots | None, offer_local: bool,
                 children: Callable[[], Awaitable[list[Child]]], child_here: bool, secret: bytes | None,
                 sink: Sink, facts: Callable[[], HostFacts] | None = None,
                 heartbeat: float = DEFAULT_HEARTBEAT, kill_grace: float = DEFAULT_KILL_GRACE,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 on_released: Callable[[str, Any], None] | None = None) -> None:
        self.name, self.host, self.work_dir = name, host, work_dir
        self.on_released = on_released
        self.slots, self.offer_local, self.children, self.child_here = slots, offer_local, children, child_here
        self.secret, self.sink, self.facts = secret, sink, facts
        self.heartbeat, self.kill_grace, self.connect_timeout = heartbeat, kill_grace, connect_timeout
        self.members: list[tuple[int, Member]] = []
        self.addresses: list[dict[str, str]] = []
        self.executed = False
        self.cwd: str | None = None
        self._local = 0
        self._closed = False

    def _local_member(self, offset: int) -> LocalInstance:
        run_dir = os.path.join(self.work_dir, "sessions", secrets.token_hex(8))
        return LocalInstance(self.name, self.host, run_dir, Offset(self.sink, offset), self.kill_grace)

    def _own(self) -> Candidate:
        assert self.slots is not None
        facts = self.facts() if self.facts else None
        return Candidate(self.name, self.slots.free, facts.load if facts else 0.0, self.slots.ncpu,
                         facts.mem_free if facts else 0, facts.mem_total if facts else 0)

    async def reserve(self, n: int, os_: str | None = None, arch: str | None = None, pick: str = "spread",
                      here: bool = False) -> list[dict[str, str]]:
        """Reserve `n` instances (0: one, here) matching `os_`/`arch`; all or nothing.

        Returns:
            Every instance's node and address, in instance order.
        Raises:
            NoResources: not enough matching free slots (nothing stays reserved).
            SessionError: already reserved, or a bad request.
        """
        if self.members:
            raise SessionError("already reserved: one reservation per session")
        if n < 0:
            raise SessionError(f"cannot reserve {n} instances")
        if pick not in PICKS:
            raise SessionError(f"unknown pick {pick!r} (choose from {', '.join(PICKS)})")
        slots = self.slots
        own_ok = slots is not None and matches(slots.os, os_) and matches(slots.arch, arch, arch=True)
        if n == 0:                                   # taskfs `res 0`: run here
            if slots is None or not own_ok or not slots.take(1):
                raise NoResources("no resources matching request: no free matching cpu here")
            self._local = 1
            member = self._local_member(0)
            self.members, self.addresses = [(0, member)], list(member.addresses)
            return self.addresses
        local = slots is not None and own_ok and (self.offer_local or here)
        cands: list[Candidate] = [self._own()] if local else []
        kids = [] if here else await self.children()
        cands += [k.candidate(os_, arch) for k in kids]
        alloc = plan(n, cands, pick)
        k_local = alloc[0] if local else 0
        if slots is not None and not slots.take(k_local):
            raise NoResources("no resources matching request: slots taken meanwhile")
        self._local = k_local
        members: list[tuple[int, Member]] = []
        offset = 0
        try:
            for _ in range(k_local):
                members.append((offset, self._local_member(offset)))
                offset += 1
            remote: list[tuple[int, RemoteSession, int]] = []
            for kid, k in zip(kids, alloc[1:] if local else alloc):
                if k:
                    rs = RemoteSession(kid.url, self.secret, Offset(self.sink, offset), name=kid.name,
                                       heartbeat=self.heartbeat, connect_timeout=self.connect_timeout)
                    members.append((offset, rs))
                    remote.append((offset, rs, k))
                    offset += k
            results = await asyncio.gather(*(self._reserve_on(rs, k, os_, arch, pick) for _, rs, k in remote),
                                           return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                raise failed[0]
        except BaseException as exc:
            await asyncio.gather(*(m.close() for _, m in members), return_exceptions=True)
            if slots is not None:
                slots.give(k_local)
            self._local = 0
            if isinstance(exc, (NoResources, asyncio.CancelledError)):
                raise
            if isinstance(exc, GeryonError):
                raise NoResources(f"no resources matching request: {exc}") from exc
            raise
        self.members = members
        self.addresses = [a for _, m in members for a in m.addresses]
        return self.addresses

    async def _reserve_on(self, rs: RemoteSession, k: int, os_: str | None, arch: str | None, pick: str) -> None:
        await rs.connect()
        try:
            got = await rs.reserve(k, os_, arch, pick, self.child_here)
        except NoResources as exc:
            raise NoResources(f"{exc} (on {rs.node})") from exc
        if len(got) != k:
            raise SessionError(f"node {rs.node}: reserved {len(got)} of {k}")

    def _need_reserved(self, what: str) -> None:
        if not self.members:
            raise SessionError(f"{what} before reserve: nothing is reserved")

    async def chdir(self, path: str) -> None:
        self._need_reserved("dir")
        if self.executed:
            raise SessionError("dir after exec: the command is already running")
        await asyncio.gather(*(m.chdir(path) for _, m in self.members))
        self.cwd = path

    async def exec(self, cmd: str | Sequence[str], env: dict[str, str] | None = None,
                   peers: Sequence[dict[str, str]] | None = None, base: int = 0) -> None:
        """Start `cmd` on every instance (a shell string, or an argv)."""
        self._need_reserved("exec")
        if self.executed:
            raise SessionError("already executing: one command per session")
        try:
            command_argv(cmd)
        except ValueError as exc:
            raise SessionError(str(exc)) from exc
        self.executed = True
        peers = list(peers) if peers is not None else self.addresses
        results = await asyncio.gather(*(m.exec(cmd, dict(env or {}), peers, base + off) for off, m in self.members),
                                       return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r if isinstance(r, GeryonError) else SessionError(f"exec: {r}")

    def _owner(self, target: int) -> tuple[int, Member] | None:
        for off, m in self.members:
            if off <= target < off + m.count:
                return off, m
        return None

    async def write(self, data: bytes, target: int = ALL) -> None:
        """Input for instance `target` (ALL: every instance)."""
        if target == ALL:
            await asyncio.gather(*(m.write(data, ALL) for _, m in self.members))
        elif (owner := self._owner(target)) is not None:
            await owner[1].write(data, target - owner[0])

    async def eof(self, target: int = ALL) -> None:
        if target == ALL:
            await asyncio.gather(*(m.eof(ALL) for _, m in self.members))
        elif (owner := self._owner(target)) is not None:
            await owner[1].eof(target - owner[0])

    async def kill(self) -> None:
        await asyncio.gather(*(m.kill() for _, m in self.members))

    async def status(self) -> list[dict[str, Any]]:
        """One record per member: `index`, `count`, `node`, `state`, `cwd`, `cmd`, `statuses`, `pids`."""
        if not self.members:
            return [{"index": 0, "count": 0, "node": self.name, "state": State.UNRESERVED.value,
                     "cwd": self.cwd or "", "cmd": "", "statuses": [], "pids": []}]
        return [{"index": off, **m.record()} for off, m in self.members]

    async def close(self) -> None:
        """Kill everything, close child sessions, give slots back; idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(m.close() for _, m in self.members), return_exceptions=True)
        for _, m in self.members:
            if isinstance(m, RemoteSession) and m.released_counts is not None and self.on_released:
                self.on_released(m.url, m.released_counts)      # a child's free slots, known now
        if self.slots is not None:
            self.slots.give(self._local)
        self._local = 0


class _SocketSink:
    """Output and exits to a session's client socket (sends serialised: frames stay in order)."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.lock = asyncio.Lock()

    async def output(self, kind: int, index: int, data: bytes) -> None:
        async with self.lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_bytes(pack_frame(kind, index, data))

    async def exit(self, index: int, status: int) -> None:
        await self.send({"op": "exit", "index": index, "status": status})

    async def send(self, doc: dict[str, Any]) -> None:
        async with self.lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(json.dumps(doc))


def _opt_str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise ProtocolError(f"{key} must be a string")
    return value


class SessionService:
    """Serves taskfs sessions and the node tree on a node daemon.

    Args:
        name: this node's name.
        source: this node's facts (os, arch, cores offered, load).
        secret: the cluster secret (signs sessions opened on children and the parent link).
        work_dir: instances' run directories go under it.
        advertise: the address instances here are reached at.
        parent: `--parent`: a node name, `tcp!host!port` or url (None: a root).
        registry: a registry client, to look a parent's name up.
    """

    def __init__(self, name: str, source: LoadSource, secret: bytes | None, work_dir: str, *,
                 advertise: str = "127.0.0.1", parent: str | None = None, registry: Any = None,
                 heartbeat: float = DEFAULT_HEARTBEAT, dead_after: float = DEFAULT_DEAD_AFTER,
                 kill_grace: float = DEFAULT_KILL_GRACE) -> None:
        self.name, self.source, self.secret, self.work_dir = name, source, secret, work_dir
        self.advertise, self.parent, self.registry = advertise, parent, registry
        self.heartbeat, self.dead_after, self.kill_grace = heartbeat, dead_after, kill_grace
        self.slots = Slots(source(), self._changed)
        self.children = Children(self._changed)
        self.changed = asyncio.Event()
        self.sessions: set[SessionCore] = set()
        self.url = ""
        self._sockets: set[web.WebSocketResponse] = set()
        self._link: asyncio.Task[None] | None = None

    def _changed(self) -> None:
        self.changed.set()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/session", self._session), web.get("/v1/sessions", self._sessions_info),
                web.get("/v1/tree", self._tree), web.get("/v1/tree/join", self._join)]

    async def start(self, url: str) -> None:
        """Start the link to the parent, if any.

        Raises:
            GeryonError: the parent is a name the registry does not know, or this node itself.
        """
        self.url = url
        if self.parent is None:
            return
        fixed = parent_url(self.parent)
        if fixed is None:
            fixed = await asyncio.get_running_loop().run_in_executor(None, lookup_node, self.parent, self.registry)
        if fixed.rstrip("/") == url.rstrip("/"):
            raise GeryonError(f"parent {self.parent}: a node cannot be its own parent")
        link = ParentLink(self.parent, self.hello, self.changed, self.secret,
                          lambda name: lookup_node(name, self.registry),
                          heartbeat=self.heartbeat, dead_after=self.dead_after)
        self._link = asyncio.create_task(link.run())

    def counts(self) -> list[Count]:
        """This node's and all its descendants' counts."""
        return add_counts([self.slots.count()], self.children.counts())

    def hello(self) -> dict[str, Any]:
        facts = self.source()
        return {"name": self.name, "url": self.url, "counts": [c.to_wire() for c in self.counts()],
                "facts": {"os": facts.os, "arch": facts.arch, "ncpu": facts.ncpu, "load": round(facts.load, 2),
                          "mem_free": facts.mem_free, "mem_total": facts.mem_total}}

    async def close(self) -> None:
        """Stop the link, end every session and child link; idempotent."""
        if self._link is not None:
            self._link.cancel()
            await asyncio.gather(self._link, return_exceptions=True)
            self._link = None
        await asyncio.gather(*(core.close() for core in list(self.sessions)), return_exceptions=True)
        for ws in list(self._sockets):
            await ws.close()

    # -- routes ---------------------------------------------------------------------------
    async def _sessions_info(self, request: web.Request) -> web.Response:
        pids = [p for core in self.sessions for rec in await core.status() for p in rec.get("pids", [])]
        return web.json_response({"sessions": len(self.sessions), "reserved": self.slots.reserved,
                                  "free": self.slots.free, "ncpu": self.slots.ncpu, "pids": pids})

    async def _tree(self, request: web.Request) -> web.Response:
        return web.json_response({"name": self.name, "url": self.url, "parent": self.parent,
                                  "children": [c.to_wire() for c in self.children.all()],
                                  "counts": [c.to_wire() for c in self.counts()]})

    async def _join(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, heartbeat=None)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await serve_child(ws, self.children, self.dead_after)
        except asyncio.TimeoutError:
            log.info("a child connected but never said hello")
        finally:
            self._sockets.discard(ws)
            await ws.close()
        return ws

    async def _kids(self) -> list[Child]:
        return self.children.all()

    async def _session(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, heartbeat=None)
        await ws.prepare(request)
        sink = _SocketSink(ws)
        core = SessionCore(name=self.name, host=self.advertise, work_dir=self.work_dir, slots=self.slots,
                           offer_local=True, children=self._kids, child_here=False, secret=self.secret,
                           sink=sink, facts=self.source, heartbeat=self.heartbeat, kill_grace=self.kill_grace,
                           on_released=self.children.refresh)
        self.sessions.add(core)
        self._sockets.add(ws)
        pinger = asyncio.create_task(self._ping(sink))
        try:
            while True:
                msg = await ws.receive(timeout=self.dead_after)
                if msg.type == aiohttp.WSMsgType.TEXT:
                    try:
                        doc = json.loads(msg.data)
                    except ValueError as exc:
                        raise ProtocolError("text frame is not JSON") from exc
                    if not isinstance(doc, dict):
                        raise ProtocolError("text frame is not a JSON object")
                    if doc.get("op") == "release":           # answered once all is released
                        await core.close()
                        await sink.send({"re": doc.get("id"), "ok": True,
                                         "counts": [c.to_wire() for c in self.counts()]})
                        break
                    await self._handle(core, doc, sink)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    kind, target, data = unpack_frame(msg.data)
                    if kind != STDIN:
                        raise ProtocolError(f"a client may only send stdin frames, not kind {kind}")
                    await core.write(data, target)
                else:
                    break                               # closed: the client is gone
        except asyncio.TimeoutError:
            log.warning("session client silent for %gs: releasing its instances", self.dead_after)
        except ProtocolError as exc:
            log.warning("session closed: protocol error: %s", exc)
            await sink.send({"op": "error", "error": f"protocol error: {exc}"})
        finally:
            pinger.cancel()
            self.sessions.discard(core)
            self._sockets.discard(ws)
            await core.close()
            await ws.close()
        return ws

    async def _ping(self, sink: _SocketSink) -> None:
        """Heartbeats to the client, which takes a node silent for `dead_after` for dead."""
        while True:
            await asyncio.sleep(self.heartbeat)
            await sink.send({"op": "ping"})

    async def _handle(self, core: SessionCore, doc: dict[str, Any], sink: _SocketSink) -> None:
        op, rid = doc.get("op"), doc.get("id")
        if op == "ping":
            return
        if op == "eof":
            target = doc.get("target", ALL)
            if not isinstance(target, int):
                raise ProtocolError("eof target must be an integer")
            await core.eof(target)
            return
        try:
            result: dict[str, Any] = {}
            if op == "reserve":
                n = doc.get("n")
                if not isinstance(n, int) or isinstance(n, bool):
                    raise ProtocolError("reserve needs an integer n")
                result["instances"] = await core.reserve(n, _opt_str(doc, "os"), _opt_str(doc, "arch"),
                                                         str(doc.get("pick") or "spread"), bool(doc.get("here")))
            elif op == "chdir":
                await core.chdir(str(_opt_str(doc, "path") or ""))
            elif op == "exec":
                cmd, env, peers, base = doc.get("cmd"), doc.get("env") or {}, doc.get("peers"), doc.get("base", 0)
                if not (isinstance(cmd, str) or (isinstance(cmd, list) and all(isinstance(a, str) for a in cmd))):
                    raise ProtocolError("exec needs cmd: a string or a list of strings")
                if not isinstance(env, dict) or not isinstance(base, int):
                    raise ProtocolError("bad exec request")
                if peers is not None and not (isinstance(peers, list) and all(isinstance(p, dict) for p in peers)):
                    raise ProtocolError("peers must be a list of objects")
                await core.exec(cmd, {str(k): str(v) for k, v in env.items()}, peers, base)
            elif op == "kill":
                await core.kill()
            elif op == "status":
                result["records"] = await core.status()
            else:
                raise ProtocolError(f"unknown op {str(op)[:40]!r}")
            reply = {"re": rid, "ok": True, **result}
        except GeryonError as exc:
            reply = {"re": rid, "ok": False, "error": str(exc)}
        await sink.send(reply)
