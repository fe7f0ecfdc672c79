"""The registry's sessions: one WebSocket per client id, whose entries live as long as it.

`Sessions.serve` runs one client's session (`GET /v1/session`): a hello with the heartbeat,
then register/update/unregister/ping messages, each answered, each touching its lease;
the same client reconnecting replaces its socket and keeps its entries. When the session
ends (its socket closes, or it fell silent: `ended`), the store drops its entries.

Not here: the HTTP routes, who may connect and the id checks (`registry.server`); the rules
of entries and leases (`registry.store`); signing the channel (`registry.channel`).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from registry import jsondoc
from registry.auth import ServerIdentity
from registry.channel import Channel, ChannelRefused, accept
from registry.errors import BadRequest, RegistryError
from registry.jsondoc import PAIRS, STR, optional
from registry.store import Store, as_pairs

if TYPE_CHECKING:
    from registry.server import ServerConfig

log = logging.getLogger(__name__)

# The shapes of session messages (registry.jsondoc checks them); UPDATE is also /v1/update's body.
MESSAGE = {"op": STR}
UPDATE = {"name": STR, "attrs": optional(PAIRS)}


class Sessions:
    """The open sessions of a registry server, by client id.

    Args:
        config: the server's settings (secret, heartbeat, dead_after, max_body).
        store: where the sessions' entries and leases live.
        identity: the server's identity, for the channel's handshake.
        clock: monotonic seconds, for leases.
        changed: called after the store may have changed (the server publishes and saves).
    """

    def __init__(self, config: ServerConfig, store: Store, identity: ServerIdentity, clock: Callable[[], float],
                 changed: Callable[[], None]) -> None:
        self._config = config
        self._store = store
        self._identity = identity
        self._clock = clock
        self._changed = changed
        self._ws: dict[str, Channel] = {}
        self._closing: set[asyncio.Task[bool]] = set()   # ws.close() calls in flight

    async def serve(self, request: web.Request, session: str, owner: str) -> web.StreamResponse:
        """Run client `session`'s session (owner `owner`) on `request` until it ends."""
        raw = web.WebSocketResponse(max_msg_size=self._config.max_body, timeout=1.0, autoping=True)
        try:
            ws = await accept(request, raw, self._config.secret, self._identity,
                              what=f"session {session} from {request.remote}")
        except ChannelRefused:
            return raw
        old = self._ws.get(session)
        self._ws[session] = ws
        if old is not None:                       # the same client reconnected: keep its entries
            self.close_later(old, b"replaced")
        self._store.open_session(session, owner, self._clock())
        log.debug("session %s (%s) from %s", session, owner, request.remote)
        try:
            await ws.send_json({"op": "hello", "heartbeat": self._config.heartbeat,
                                "dead_after": self._config.dead_after})
            async for msg in ws:
                if self._ws.get(session) is not ws:
                    break
                self._store.touch(session, self._clock())
                if msg.type != WSMsgType.TEXT:
                    await ws.send_json({"error": "bad message", "kind": "bad"})
                    continue
                reply = self._reply(session, owner, msg.data)
                if reply is not None:
                    await ws.send_json(reply)
        except ConnectionError as exc:               # gone mid-reply: same as closed
            log.debug("session %s: %s", session, exc)
        finally:
            if self._ws.get(session) is ws:
                del self._ws[session]
                self._drop(session)
        return raw

    def _reply(self, session: str, owner: str, data: str) -> dict[str, Any] | None:
        """The answer to one session message (None: no answer), the store changed as it asks."""
        try:
            msg = jsondoc.load_object(data, MESSAGE, what="message", max_bytes=self._config.max_body)
        except BadRequest as exc:
            return {"error": str(exc), "kind": "bad"}
        op, rid = msg.get("op"), msg.get("id")
        try:
            if op == "ping":
                return {"op": "pong", "id": rid}
            msg = jsondoc.check(msg, UPDATE, what=f"{op} message")
            name = msg["name"]
            if op == "register":
                service = self._store.register(name, as_pairs(msg.get("attrs") or []), owner=owner,
                                               session=session)
            elif op == "update":
                service = self._store.update(name, as_pairs(msg.get("attrs") or []), owner=owner)
            elif op == "unregister":
                self._store.unregister(name, owner=owner)
                service = None
            else:
                raise BadRequest(f"unknown op {str(op)[:32]!r}")
        except RegistryError as exc:
            return {"id": rid, "error": str(exc), "kind": exc.kind}
        finally:
            self._changed()
        return {"id": rid, "ok": True, "service": service.to_wire() if service else None}

    def ended(self, dead: Iterable[str]) -> None:
        """Close the sockets of sessions the store found silent."""
        for session in dead:
            log.info("session %s silent for %.1fs: dead", session, self._config.dead_after)
            ws = self._ws.pop(session, None)
            if ws is not None:
                self.close_later(ws, b"dead")

    async def close(self) -> None:
        """Close every session's socket (the server is stopping)."""
        for ws in list(self._ws.values()):
            await ws.close()

    def close_later(self, ws: Channel, why: bytes) -> None:
        """Close `ws` without waiting for its peer (which may be stopped)."""
        task = asyncio.create_task(ws.close(message=why))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _drop(self, session: str) -> None:
        removed = self._store.close_session(session)
        if removed:
            log.info("session %s ended: removed %s", session, " ".join(s.name for s in removed))
        self._changed()
