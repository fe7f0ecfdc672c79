"""One taskfs session's members on a node: its local instance processes and child groups.

`SessionCore` carries one session's life cycle — reserve, chdir, exec, input, kill, status,
close — and is the same code behind a node's `/v1/session` socket and an embedded client.
A reservation takes this machine's `Slots` first (when they match and are offered) and
delegates the rest, as `geryon.taskfs.tree.plan` says, to immediate children, each through a
`RemoteSession` of its own; members are numbered 0..N-1 in order, a child's frames
renumbered by `Offset`. A reservation not met in full is rolled back (processes killed,
slots given back, child sessions closed) and raises `NoResources`.

Each instance runs in a run directory of its own under the node's work directory (its
cwd unless `dir` says otherwise; removed on release), in its own process group, with
$GERYON_NODE, $GERYON_INSTANCE, $GERYON_NINSTANCES, $GERYON_PORT, $GERYON_PEERS and
$GERYON_PEERS_FILE (`peers` in the run directory). A command that cannot start exits 127.
Killing sends SIGTERM to the process group, then SIGKILL after a grace.

Not here: sockets, routes and the protocol's server side (`geryon.node.sessionservice`), the
frames and the client socket (`geryon.taskfs.wire`), planning and the tree
(`geryon.taskfs.tree`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from geryon.errors import GeryonError
from geryon.cluster.hostfacts import HostFacts
from geryon.taskfs.tree import PICKS, Candidate, Child, Count, matches, plan
from geryon.taskfs.wire import (ALL, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HEARTBEAT, STDERR, STDOUT, NoResources,
                                Offset, RemoteSession, SessionError, Sink, State, display, group_state)
from shell.block import command_argv
from geryon.defaults import DEFAULT_KILL_GRACE

log = logging.getLogger(__name__)


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
