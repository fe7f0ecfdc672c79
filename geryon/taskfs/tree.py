"""Node trees: children announce themselves to a parent, counts add up, instances spread.

Three things, as in Pravin Shinde's taskfs for Inferno:

- **Counts and planning**: `geryon.taskfs.plan` (pure; re-exported here).
- **The link.** `geryon node --parent NODE_OR_URL` runs a `ParentLink`: a WebSocket to the
  parent's `/v1/tree/join`, signed with the cluster secret, that sends `hello` (name, url,
  facts, counts), then `counts` whenever they change and `ping` every heartbeat. The parent
  keeps the child in its `Children` table exactly as long as that socket lives: a child
  that dies closes it (gone at once), one that freezes misses heartbeats (gone after
  `dead_after`). A child's answer to a session `release` also carries its counts, so a
  parent sees freed slots before the next reservation (`Children.refresh`). The link
  reconnects with jittered backoff, re-resolving a parent given by name through the
  registry's cpu services (`host NAME url ...`). `os`/`arch` are the names the node's cpu
  service registers (Inferno's `386` for x86); requests may say `x86_64` or `amd64` too.

Not here: sessions, processes and the routes themselves (`geryon.node.sessionservice`).
Cycles (a node made its own ancestor) are not detected.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from geryon.errors import GeryonError
from geryon.net.aio import node_http
from geryon.taskfs.plan import (PICKS, WILDCARDS, Candidate, Count, add_counts, format_counts, free_matching,
                                least_loaded, matches, plan, spread)
from geryon.taskfs.wire import DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT
from registry import jsondoc
from registry.channel import Channel
from registry.errors import RegistryError
from registry.signer import Signer
from registry import tls
from registry.backoff import Backoff

log = logging.getLogger(__name__)

__all__ = ["Child", "Children", "ParentLink", "child_from_hello", "lookup_node", "parent_url", "serve_child",
           # re-exported from geryon.taskfs.plan
           "PICKS", "WILDCARDS", "Candidate", "Count", "add_counts", "format_counts", "free_matching",
           "least_loaded", "matches", "plan", "spread"]


# -- the parent's side: its immediate children ---------------------------------------------
@dataclass(frozen=True)
class Child:
    """An immediate child as its last message described it."""

    name: str
    url: str
    counts: tuple[Count, ...]
    load: float = 0.0
    ncpu: int = 1
    mem_free: int = 0
    mem_total: int = 0
    since: float = 0.0

    def candidate(self, os: str | None, arch: str | None) -> Candidate:
        return Candidate(self.name, free_matching(self.counts, os, arch), self.load, self.ncpu,
                         self.mem_free, self.mem_total)

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "counts": [c.to_wire() for c in self.counts],
                "load": self.load, "ncpu": self.ncpu}


def child_from_hello(doc: Mapping[str, Any], now: float) -> Child:
    """A `Child` from a `hello` (or `counts`) message; raises ValueError if malformed."""
    url = str(doc.get("url", ""))
    if not url.startswith(("http://", "https://")):
        raise ValueError("hello without an http url")
    counts = doc.get("counts")
    if not isinstance(counts, list):
        raise ValueError("hello without counts")
    facts = doc.get("facts") or {}
    if not isinstance(facts, Mapping):
        raise ValueError("bad facts")
    try:
        return Child(str(doc.get("name") or url), url, tuple(Count.from_wire(c) for c in counts),
                     float(facts.get("load", 0.0)), int(facts.get("ncpu", 1)),
                     int(facts.get("mem_free", 0)), int(facts.get("mem_total", 0)), now)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad hello: {exc}") from exc


class Children:
    """The live immediate children of this node, keyed by url; calls `changed` on every change."""

    def __init__(self, changed: Callable[[], None] = lambda: None) -> None:
        self._children: dict[str, Child] = {}
        self._changed = changed

    def put(self, child: Child) -> None:
        old = self._children.get(child.url)
        self._children[child.url] = child
        if old is None or old.counts != child.counts:
            self._changed()

    def refresh(self, url: str, counts: Any) -> None:
        """New counts for a child, from a release's answer (ignored if malformed or unknown)."""
        child = self._children.get(url)
        if child is None or not isinstance(counts, list):
            return
        try:
            self.put(replace(child, counts=tuple(Count.from_wire(c) for c in counts)))
        except ValueError as exc:
            log.debug("counts from %s: %s", url, exc)

    def drop(self, url: str) -> None:
        if self._children.pop(url, None) is not None:
            self._changed()

    def all(self) -> list[Child]:
        """The children, in name order (the order instances are spread over)."""
        return sorted(self._children.values(), key=lambda c: (c.name, c.url))

    def counts(self) -> list[Count]:
        return add_counts(*(c.counts for c in self._children.values()))


# -- the child's side: the link up ----------------------------------------------------------
def parent_url(parent: str) -> str | None:
    """`http(s)://...` as is, `tcp!host!port` in the cluster's scheme; None for a node name (look it up)."""
    if parent.startswith(("http://", "https://")):
        return parent.rstrip("/")
    if parent.startswith("tcp!"):
        parts = parent.split("!")
        if len(parts) >= 3 and parts[2].isdigit():
            return tls.base_url(f"{parts[1]}:{parts[2]}")
        raise GeryonError(f"parent {parent}: not tcp!host!port")
    return None


def lookup_node(name: str, registry: Any) -> str:
    """The url of the node called `name`, from the registry's cpu services (blocking).

    Raises:
        GeryonError: no registry, or no cpu service with `host name`.
    """
    if registry is None:
        raise GeryonError(f"parent {name}: a node name needs a registry (or give http://host:port)")
    from registry.errors import RegistryError
    try:
        found = registry.find((("svc", "rstyx"), ("host", name)))
    except RegistryError as exc:
        raise GeryonError(f"parent {name}: cannot look it up: {exc}") from exc
    urls = [s.get("url") for s in found if s.get("url")]
    if not urls:
        raise GeryonError(f"parent {name}: no such node in the registry")
    return str(urls[0])


class ParentLink:
    """Keeps this node announced to its parent; `run()` until cancelled.

    Args:
        parent: the parent's url, `tcp!host!port`, or node name.
        hello: this node's `hello` message now (name, url, facts, counts).
        changed: set when the counts may have changed (cleared here once sent).
        secret: signs the WebSocket handshake.
        resolve: name -> url (blocking; run in an executor), for parents given by name.
    """

    def __init__(self, parent: str, hello: Callable[[], dict[str, Any]], changed: asyncio.Event,
                 secret: bytes | None, resolve: Callable[[str], str], *,
                 heartbeat: float = DEFAULT_HEARTBEAT, dead_after: float = DEFAULT_DEAD_AFTER) -> None:
        self.parent, self.hello, self.changed = parent, hello, changed
        self.secret, self.resolve = secret, resolve
        self.heartbeat, self.dead_after = heartbeat, dead_after
        self._warned = False

    async def url(self) -> str:
        """The parent's url now (looked up again each time for a name)."""
        fixed = parent_url(self.parent)
        if fixed is not None:
            return fixed
        return await asyncio.get_running_loop().run_in_executor(None, self.resolve, self.parent)

    async def run(self) -> None:
        backoff = Backoff()
        async with node_http(sock_connect=self.dead_after) as http:
            while True:
                try:
                    url = await self.url()
                    async with await Signer(self.secret).connect(http, url, "/v1/tree/join", what="tree link",
                                                                 heartbeat=None, max_msg_size=1 << 22) as ws:
                        backoff.reset()
                        self._warned = False
                        await self._serve(ws)
                except aiohttp.WSServerHandshakeError as exc:
                    why = "authentication failed (check the cluster secret)" if exc.status == 401 else str(exc)
                    self._warn(f"parent {self.parent} refused this node: {why}")
                except (GeryonError, RegistryError) as exc:      # RegistryError: a failed handshake
                    self._warn(str(exc))
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                    self._warn(f"parent {self.parent}: {exc or type(exc).__name__}")
                await asyncio.sleep(backoff.next())

    def _warn(self, message: str) -> None:
        (log.debug if self._warned else log.warning)("%s (retrying)", message)
        self._warned = True

    async def _serve(self, ws: Channel) -> None:
        doc = self.hello()
        self.changed.clear()
        await ws.send_str(json.dumps({"op": "hello", **doc}))
        sent = doc
        reader = asyncio.create_task(_drain(ws))
        try:
            while not reader.done():
                waiter = asyncio.create_task(self.changed.wait())
                done, _ = await asyncio.wait({waiter, reader}, timeout=self.heartbeat,
                                             return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if reader in done:
                    return
                doc = self.hello()
                self.changed.clear()
                if doc != sent:
                    await ws.send_str(json.dumps({"op": "counts", **doc}))
                    sent = doc
                else:
                    await ws.send_str('{"op": "ping"}')
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def _drain(ws: Channel) -> None:
    """Read (and drop) what the parent sends, until the socket closes."""
    async for _ in ws:
        pass


async def serve_child(ws: Any, children: Children, dead_after: float,
                      clock: Callable[[], float] = time.monotonic) -> None:
    """The parent's side of one link: keep the child listed while its socket lives.

    Raises nothing: a malformed message ends the link (the child reconnects).
    """
    msg = await ws.receive(timeout=dead_after)
    url = None
    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
        return                            # gone, or closed by the channel (a refused frame: logged)
    try:
        doc = jsondoc.loads(msg.data, what="tree link") if msg.type == aiohttp.WSMsgType.TEXT else None
        if not isinstance(doc, dict) or doc.get("op") != "hello":
            raise ValueError("a tree link must start with hello")
        child = child_from_hello(doc, clock())
        url = child.url
        children.put(child)
        log.info("child %s (%s) joined", child.name, child.url)
        while True:
            msg = await ws.receive(timeout=dead_after)
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            doc = jsondoc.loads(msg.data, what="tree link")
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            if doc.get("op") == "counts":
                update = child_from_hello({**doc, "url": url}, clock())
                children.put(update)
            elif doc.get("op") != "ping":
                raise ValueError(f"unknown op {str(doc.get('op'))[:40]!r}")
    except asyncio.TimeoutError:
        log.warning("child %s missed its heartbeats: dropped", url)
    except (ValueError, TypeError) as exc:
        log.warning("tree link from %s: %s", url or "a child", exc)
        with contextlib.suppress(ConnectionError, RuntimeError):    # closed (a refused frame): no answer
            await ws.send_str(json.dumps({"op": "error", "error": str(exc)}))
    finally:
        if url is not None:
            children.drop(url)
            log.info("child %s left", url)
