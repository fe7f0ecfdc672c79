"""taskfs sessions from Python: reserve instances, run one command on all, gather the results.

    with geryon.session(node="root") as s:       # the clone
        s.reserve(4, os="Linux")                  # res 4 Linux
        s.exec("hostname")                        # exec hostname
        print(s.stdout.read())                    # stdio, merged line by line
        print(s.wait())                           # every instance's exit status

Where a session runs: `node=NAME_OR_URL` opens it on that node (a tree root: it spreads
the instances over itself and its subtree); else with `registry=` the client is the root
and spreads them over the registry's cpus (each node's own cores only); with neither, the
rule every verb follows (`geryon.cluster.where`): $GERYON_REGISTRY, else a registry of this cluster
found over zeroconf, else embedded, on this machine's cores (the same code a node runs);
`local=True` runs embedded at once. `reserve(0)` runs one
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
buffered without limit until read; input is queued on the nodes without limit. The
session wire's client side (`RemoteSession`, frames, errors, defaults) lives in
`geryon.taskfs.wire`, the output streams in `geryon.taskfs.streams`, both re-exported here;
aiohttp is imported only when a session is first opened, so `import geryon` stays fast.
Not here: the node's side (`geryon.node.sessionservice`, `geryon.taskfs.core`), planning
(`geryon.taskfs.plan`) and the tree (`geryon.taskfs.tree`), FUSE (`geryon.taskfs.fuse`).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from geryon.errors import GeryonError
from geryon.net import loop as net_loop
from geryon.taskfs.streams import InstanceStatus, OutputStream, Scatter, _Merge
from geryon.taskfs.wire import (ALL, CHUNK, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT,
                                DEFAULT_RELEASE_TIMEOUT, LOST_STATUS, MAX_FRAME, STDERR, STDIN, STDOUT,
                                NoResources, Offset, ProtocolError, RemoteSession, SessionError, Sink, State,
                                display, group_state, pack_frame, unpack_frame)

if TYPE_CHECKING:
    from geryon.taskfs.tree import Child, Count

__all__ = [
    # the API
    "InputStream", "LoopThread", "Session", "cluster_status", "session",
    # re-exported from geryon.taskfs.streams
    "InstanceStatus", "OutputStream", "Scatter",
    # re-exported from geryon.taskfs.wire
    "ALL", "CHUNK", "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_DEAD_AFTER", "DEFAULT_HEARTBEAT",
    "DEFAULT_RELEASE_TIMEOUT", "LOST_STATUS", "MAX_FRAME", "STDERR", "STDIN", "STDOUT", "NoResources", "Offset",
    "ProtocolError", "RemoteSession", "SessionError", "Sink", "State", "display", "group_state", "pack_frame",
    "unpack_frame",
]

# -- the synchronous API ---------------------------------------------------------------------
class LoopThread(net_loop.LoopThread):
    """The loop thread (`geryon.net.loop.LoopThread`) a session runs on; a call once it is closed
    raises SessionError."""

    def __init__(self, name: str = "geryon-session") -> None:
        super().__init__(name, on_closed=lambda: SessionError("session is closed"))


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
                 pick: str = "spread", kill_on_close: bool = False, cleanup: str | None = None,
                 registry: Any = None) -> None:
        self._backend, self._merge, self._runner = backend, merge, runner
        self._registry = registry   # a registry client this session made, closed with it
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
            if self._registry is not None:
                self._registry.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(kill=True if exc_type is not None else None)


def _node_url(node: str, registry: Any) -> str:
    from geryon.taskfs.tree import lookup_node, parent_url
    return parent_url(node) or lookup_node(node, registry)


async def _registry_children(registry: Any) -> list[Child]:
    from geryon.taskfs.tree import Child, Count
    from geryon.cluster.pick import CpuInfo
    from geryon.cluster.rcpu import CPU_QUERY
    services = await asyncio.get_running_loop().run_in_executor(None, registry.find, CPU_QUERY)
    cpus = sorted((CpuInfo.from_service(s) for s in services), key=lambda c: (c.host, c.name))
    return [Child(c.host or c.name, c.url, (Count(c.os, c.arch, 1, c.ncpu, c.ncpu),), c.load, c.ncpu,
                  c.mem_free, c.mem_total) for c in cpus if c.url]


def _library_secret() -> bytes:
    from geryon.disks.remote import library_secret
    try:
        return library_secret()
    except GeryonError as exc:
        raise SessionError(str(exc)) from exc


def session(*, node: str | None = None, registry: Any = None, secret: bytes | None = None,
            tag: bool = False, kill_on_close: bool = False, pick: str = "spread",
            runner: LoopThread | None = None, heartbeat: float = DEFAULT_HEARTBEAT,
            connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, local: bool = False) -> Session:
    """Open a session (taskfs's `clone`).

    Args:
        node: a node's name or `http://host:port`: the session's root (names need a registry).
        registry: a registry client, or a registry URL: without `node`, spread over its cpus
            from here. None: $GERYON_REGISTRY, else one found over zeroconf, else this machine
            (`geryon.cluster.where`).
        secret: the cluster secret (default: as the CLI finds it, `geryon.disks.remote.library_secret`).
        local: run on this machine's cores, whatever registry is configured or answers.
        tag: prefix output lines with `[index node] `.
        kill_on_close: kill running instances on close instead of waiting for them.
        pick: `spread` (the taskfs rule) or `load` (least loaded first, dsh's score).
        runner: a loop thread to share between sessions (default: one per session).
    Raises:
        SessionError: the node is unknown, unreachable, or refuses the secret.
    """
    if secret is None and (node is not None or registry is not None):
        secret = _library_secret()
    merge = _Merge(tag)
    registry, secret, own_registry = _registry_by_rule(node, registry, secret, local)
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
            from geryon.cluster.hostfacts import read_host_facts
            from geryon.taskfs.core import SessionCore, Slots, local_host
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
        if own_registry is not None:
            own_registry.close()
        raise
    return Session(backend, merge, loop, own_runner=own, pick=pick, kill_on_close=kill_on_close,
                   cleanup=cleanup, registry=own_registry)


def _registry_by_rule(node: str | None, registry: Any, secret: bytes | None,
                      local: bool) -> tuple[Any, bytes | None, Any]:
    """The registry client a session or status uses, by the local-or-cluster rule; the secret;
    and the client if this call made it (its caller closes it)."""
    if local or (node is not None and node.startswith(("http://", "https://", "tcp!"))):
        return (None if local else registry), secret, None
    if registry is None:
        from geryon.cluster.where import api_where
        where, secret = api_where(False, secret, os.environ)
        registry = where.registry
    if isinstance(registry, str):
        from registry.client import RegistryClient
        client = RegistryClient(registry, secret=secret, owner="session")
        return client, secret, client
    return registry, secret, None


def cluster_status(*, node: str | None = None, registry: Any = None, secret: bytes | None = None,
                   local: bool = False) -> list[Count]:
    """The aggregated `os arch` counts: a node's whole tree, the registry's cpus, or this machine
    (chosen as `session` chooses).

    Raises:
        GeryonError: the node is unknown or unreachable.
    """
    registry, secret, own = _registry_by_rule(node, registry, secret, local)
    try:
        return _status(node, registry, secret)
    finally:
        if own is not None:
            own.close()


def _status(node: str | None, registry: Any, secret: bytes | None) -> list[Count]:
    from geryon.taskfs.tree import Count, add_counts
    if node is not None:
        from geryon.net.connection import NodeConnection
        url = _node_url(node, registry)
        with NodeConnection(url, secret if secret is not None else _library_secret()) as conn:
            status, body = conn.request("GET", "/v1/tree")
        if status != 200:
            raise GeryonError(f"node {node}: {body[:200].decode(errors='replace')}")
        return [Count.from_wire(c) for c in json.loads(body)["counts"]]
    if registry is not None:
        from geryon.cluster.pick import CpuInfo
        from geryon.cluster.rcpu import CPU_QUERY
        cpus = [CpuInfo.from_service(s) for s in registry.find(CPU_QUERY)]
        return add_counts([Count(c.os, c.arch, 1, c.ncpu, c.ncpu) for c in cpus])
    from geryon.cluster.hostfacts import read_host_facts
    facts = read_host_facts()
    return [Count(facts.os, facts.arch, 1, facts.ncpu, facts.ncpu)]
