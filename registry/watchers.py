"""Watchers: WebSocket connections that receive every registry event as it happens.

Each watcher has a bounded queue; one that falls behind (a slow or stopped reader) is
disconnected rather than allowed to hold memory or slow anyone else. It reconnects and
gets a fresh snapshot. This module does not decide what the events are (the store does).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiohttp import web

from registry.channel import Channel
from registry.store import Event

log = logging.getLogger(__name__)

DEFAULT_WATCH_QUEUE = 4096
"""Events queued for one watcher before it is dropped as too slow."""


class Watchers:
    """The set of connected watchers."""

    def __init__(self, queue_size: int = DEFAULT_WATCH_QUEUE) -> None:
        self.queue_size = queue_size
        self._senders: dict[asyncio.Queue[Event], asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._senders)

    def publish(self, events: Iterable[Event]) -> None:
        """Queue `events` for every watcher; drop those whose queue is full."""
        events = list(events)
        for q, sender in list(self._senders.items()):
            try:
                for event in events:
                    q.put_nowait(event)
            except asyncio.QueueFull:
                log.info("watcher too slow: dropped")
                del self._senders[q]
                sender.cancel()

    def close_all(self) -> None:
        """Disconnect every watcher."""
        for sender in self._senders.values():
            sender.cancel()
        self._senders.clear()

    async def serve(self, request: web.Request, ws: Channel) -> None:
        """Send events to `ws` until it closes or falls behind."""
        q: asyncio.Queue[Event] = asyncio.Queue(self.queue_size)
        sender = asyncio.create_task(self._send(ws, q))
        self._senders[q] = sender

        async def drain_input() -> None:       # we expect nothing; this notices the close
            async for _msg in ws:
                pass

        reader = asyncio.create_task(drain_input())
        try:
            await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._senders.pop(q, None)
            for task in (sender, reader):
                task.cancel()
            await asyncio.gather(sender, reader, return_exceptions=True)
            try:
                await asyncio.wait_for(ws.close(), 2.0)
            except (asyncio.TimeoutError, ConnectionError):
                if request.transport is not None:
                    request.transport.abort()       # a reader that never reads

    @staticmethod
    async def _send(ws: Channel, q: asyncio.Queue[Event]) -> None:
        try:
            while True:
                event = await q.get()
                await ws.send_json({"op": "event", **event.to_wire()})
        except (ConnectionError, RuntimeError) as exc:
            log.debug("watcher gone: %s", exc)
