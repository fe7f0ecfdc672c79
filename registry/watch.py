"""`Watch`: registry events as they happen, surviving registry restarts.

Runs on its `RegistryClient`'s loop and reaches into that client for the connection
details (one package, one seam). After a reconnection it yields the difference between
what it knew and the new snapshot, so no change is silently lost; it does not replay
the exact intermediate events it missed.
"""
from __future__ import annotations

import asyncio
import json
import logging
import queue
from collections.abc import Iterator
from typing import TYPE_CHECKING

import aiohttp

from registry.backoff import Backoff
from registry.errors import AuthenticationFailed, RegistryError, RegistryUnavailable
from registry.store import Event, EventKind, Service

if TYPE_CHECKING:
    from registry.client import RegistryClient

log = logging.getLogger(__name__)


class Watch:
    """Registry events as they happen: iterate, or `get(timeout)`; a context manager.

    Survives registry restarts: after reconnecting it yields the difference between what
    it knew and the new snapshot, so no change is silently lost.
    """

    def __init__(self, client: RegistryClient, initial: bool) -> None:
        self._client = client
        self._queue: queue.Queue[Event | BaseException] = queue.Queue()
        self._known: dict[str, Service] | None = None
        self._initial = initial
        self._task = asyncio.run_coroutine_threadsafe(self._start(), client._loop).result()

    async def _start(self) -> asyncio.Task[None]:
        return self._client._spawn(self._run())

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after `timeout` seconds."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.get()
            if event is not None:
                yield event

    def close(self) -> None:
        """Stop watching; idempotent."""
        if not self._client._loop.is_closed():
            self._client._loop.call_soon_threadsafe(self._task.cancel)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _emit(self, kind: EventKind, version: int, service: Service) -> None:
        self._queue.put(Event(version, kind, service))

    def _snapshot(self, version: int, services: list[Service]) -> None:
        new = {s.name: s for s in services}
        old = self._known
        self._known = new
        if old is None:
            if self._initial:
                for s in services:
                    self._emit(EventKind.ADD, version, s)
            return
        for name, s in old.items():
            if name not in new:
                self._emit(EventKind.REMOVE, version, s)
        for name, s in new.items():
            if name not in old:
                self._emit(EventKind.ADD, version, s)
            elif old[name] != s:
                self._emit(EventKind.UPDATE, version, s)

    async def _run(self) -> None:
        c = self._client
        backoff = Backoff(c.backoff_base, c.backoff_cap)
        while True:
            url = None
            try:
                url = await c._locate()
                async with await c._signer.connect(
                        c._http, url, "/v1/watch", headers=c._ids(), what="registry watch",
                        autoping=True, max_msg_size=0,
                        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=1.0)) as ws:
                    backoff.reset()
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            continue
                        doc = json.loads(msg.data)
                        if doc.get("op") == "snapshot":
                            self._snapshot(int(doc["version"]), [Service.from_wire(s) for s in doc["services"]])
                        elif doc.get("op") == "event":
                            event = Event.from_wire(doc)
                            assert self._known is not None
                            if event.kind is EventKind.REMOVE:
                                self._known.pop(event.service.name, None)
                            else:
                                self._known[event.service.name] = event.service
                            self._queue.put(event)
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 401:
                    self._queue.put(AuthenticationFailed("authentication failed (check the cluster secret)"))
                    return
                c._lost(url)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, RegistryUnavailable,
                    ValueError, RegistryError) as exc:
                log.debug("watch: %s", exc)
                c._lost(url)
            await asyncio.sleep(backoff.next())
