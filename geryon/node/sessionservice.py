"""taskfs sessions on a node: reserve instances, fan a command out, relay its I/O, release.

Routes (signed with the cluster secret, like every node route):
  GET /v1/session     WebSocket: one session (protocol below); closing it releases everything
  GET /v1/sessions    JSON: sessions open here, slots reserved, pids running
  GET /v1/tree        JSON: this node, its immediate children, aggregated `os arch` counts
  GET /v1/tree/join   WebSocket: an immediate child's link (`geryon.taskfs.tree`)

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

Release guarantees: the session ends — processes killed (SIGTERM, then SIGKILL after a
grace), slots given back, child sessions closed (so recursively) — when its socket closes
for any reason (the client exited or was killed: the kernel closes the socket), when the
client is silent for `dead_after` seconds (frozen; clients ping every `heartbeat`), on a
protocol error, and when the node shuts down. Not here: one session's members, its
instance processes and this machine's slots (`geryon.taskfs.core`), the client API
and the wire's client side (`geryon.taskfs.client`, `geryon.taskfs.wire`), planning and the tree
link (`geryon.taskfs.tree`).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import aiohttp
from aiohttp import web

from geryon.errors import GeryonError
from geryon.cluster.hostfacts import LoadSource
from geryon.taskfs.core import (DEFAULT_KILL_GRACE, LocalInstance, Member, SessionCore, Slots, exit_status,
                                     free_port, kill_group, local_host)
from geryon.taskfs.tree import Child, Children, Count, ParentLink, add_counts, lookup_node, parent_url, serve_child
from geryon.taskfs.wire import (ALL, DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT, MAX_FRAME, STDIN, ProtocolError,
                                pack_frame, unpack_frame)
from registry import jsondoc
from registry.auth import ServerIdentity
from registry.channel import Channel, ChannelRefused, accept

__all__ = [
    "SessionService",
    # re-exported from geryon.taskfs.core
    "DEFAULT_KILL_GRACE", "LocalInstance", "Member", "SessionCore", "Slots", "exit_status", "free_port",
    "kill_group", "local_host",
]

log = logging.getLogger(__name__)


class _SocketSink:
    """Output and exits to a session's client socket (sends serialised: frames stay in order)."""

    def __init__(self, ws: Channel) -> None:
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
                 kill_grace: float = DEFAULT_KILL_GRACE, identity: ServerIdentity | None = None) -> None:
        self.name, self.source, self.secret, self.work_dir = name, source, secret, work_dir
        self.identity = identity or ServerIdentity.new(f"node:{name}", secret)
        self.advertise, self.parent, self.registry = advertise, parent, registry
        self.heartbeat, self.dead_after, self.kill_grace = heartbeat, dead_after, kill_grace
        self.slots = Slots(source(), self._changed)
        self.children = Children(self._changed)
        self.changed = asyncio.Event()
        self.sessions: set[SessionCore] = set()
        self.url = ""
        self._sockets: set[Channel] = set()
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
        raw = web.WebSocketResponse(max_msg_size=MAX_FRAME, heartbeat=None)
        try:
            ws = await accept(request, raw, self.secret, self.identity, what=f"tree link from {request.remote}")
        except ChannelRefused:
            return raw
        self._sockets.add(ws)
        try:
            await serve_child(ws, self.children, self.dead_after)
        except asyncio.TimeoutError:
            log.info("a child connected but never said hello")
        finally:
            self._sockets.discard(ws)
            await ws.close()
        return raw

    async def _kids(self) -> list[Child]:
        return self.children.all()

    async def _session(self, request: web.Request) -> web.StreamResponse:
        raw = web.WebSocketResponse(max_msg_size=MAX_FRAME, heartbeat=None)
        try:
            ws = await accept(request, raw, self.secret, self.identity, what=f"taskfs session from {request.remote}")
        except ChannelRefused:
            return raw
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
                        doc = jsondoc.check(jsondoc.loads(msg.data, what="text frame"), {}, what="text frame")
                    except jsondoc.NotJSON as exc:
                        raise ProtocolError("text frame is not JSON") from exc
                    except jsondoc.BadJSON as exc:              # too deep, too big, not an object
                        raise ProtocolError(str(exc)) from exc
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
        return raw

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
        except ProtocolError:
            raise                                       # the session ends (below GeryonError, not a refusal)
        except GeryonError as exc:
            reply = {"re": rid, "ok": False, "error": str(exc)}
        await sink.send(reply)
