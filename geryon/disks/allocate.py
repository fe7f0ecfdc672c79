"""Chunk allocation: where new chunks come from, on a node and across the cluster.

On a node, a `ChunkPool` (`geryon.disks.chunkpool`, importable from here as before) is a
directory from which the chunk service makes chunks on request. A node with a pool adds
`pool ROOM` (bytes it can still hand out) to its cpu service's registry entry.

Across the cluster (the seed's lab-40 chunk queue), `Storage.read(registry, named)`
collects what the registry says: every node's *free chunks* (registered chunks that no
ndb disk names and that hold nothing) and its pool room. `Allocator` turns that into
placement slots, picks with `placement.place` (most room first, copies on distinct
hosts) and claims the chunks: a free chunk is used as it is (after checking on its node
that it is still empty), a pool slot asks the node for a new chunk. A chunk is looked up
by `NODE!CHUNK` with `locate`. Not here: naming disks (`diskdb`), filling chunks (`load`,
`replicate`).
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from geryon.disks.chunkpool import ChunkPool
from geryon.errors import DiskFull, GeryonError, UnknownDisk
from geryon.disks.placement import ChunkSlot, NoRoom, place

log = logging.getLogger(__name__)

__all__ = ["Allocator", "ChunkPool", "ChunkRef", "HostStorage", "POOL_SLOT", "Storage", "give_back", "locate",
           "new_chunk"]

POOL_SLOT = ""
"""`ChunkSlot.path` of a slot that stands for a node's pool (a chunk to be made)."""


@dataclass(frozen=True)
class ChunkRef:
    """A chunk on a node: `host!chunk` and the node's `http://addr:port`."""

    host: str
    chunk: str
    node_url: str

    @property
    def where(self) -> str:
        return f"{self.host}!{self.chunk}"

    def open(self, secret: bytes | None, timeout: float | None = None) -> Any:
        """The chunk as a `RemoteFS`."""
        from geryon.disks.remote import RemoteFS

        if timeout is None:
            return RemoteFS(self.node_url, self.chunk, secret)
        return RemoteFS(self.node_url, self.chunk, secret, timeout=timeout)


def _node_url(geryon_url: str) -> str:
    from geryon.disks.remote import parse_node_url

    return parse_node_url(geryon_url)[0]


def locate(registry: Any, host: str, chunk: str) -> ChunkRef | None:
    """The live chunk `host!chunk` (registered by its node), or None."""
    for svc in registry.find({"resource": "kfs", "name": host, "id": chunk}):
        url = svc.get("url")
        if url:
            return ChunkRef(host, chunk, _node_url(url))
    return None


@dataclass(frozen=True)
class HostStorage:
    """What one node offers for new chunks."""

    host: str
    node_url: str
    free_chunks: tuple[tuple[str, int], ...] = ()       # (chunk, capacity), empty and unnamed
    pool_room: int | None = None                        # None: no pool


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


@dataclass
class Storage:
    """Every node's free chunks and pool room, as the registry says."""

    hosts: dict[str, HostStorage] = field(default_factory=dict)
    plain: tuple[str, ...] = ()     # `host!chunk` of unnamed disks that are plain directories, not chunks

    @classmethod
    def read(cls, registry: Any, named: Iterable[tuple[str, str]] = ()) -> Storage:
        """Ask the registry. `named` adds `(host, chunk)` pairs named elsewhere (the ndb file)."""
        taken = set(named)
        for svc in registry.find({"chunk": "*"}):         # the registry's ndb-named disks
            if svc.get("host") and svc.get("chunk"):
                taken.add((svc.get("host"), svc.get("chunk")))
        free: dict[str, list[tuple[str, int]]] = {}
        urls: dict[str, str] = {}
        plain: list[str] = []
        for svc in registry.find({"resource": "kfs"}):
            host, chunk, url = svc.get("name"), svc.get("id"), svc.get("url")
            if not host or not chunk or not url:
                continue
            urls.setdefault(host, _node_url(url))
            cap, left = _int(svc.get("capacity")), _int(svc.get("free"))
            if (host, chunk) not in taken and svc.get("capacity") == "none" and not svc.get("replica"):
                plain.append(f"{host}!{chunk}")
            if (host, chunk) in taken or cap is None or left != cap:
                continue
            free.setdefault(host, []).append((chunk, cap))
        pools: dict[str, int] = {}
        for svc in registry.find({"svc": "rstyx"}):
            host, room, url = svc.get("host"), _int(svc.get("pool")), svc.get("url")
            if host and room is not None and url:
                pools[host] = room
                urls.setdefault(host, url.rstrip("/"))
        hosts = {h: HostStorage(h, urls[h], tuple(sorted(free.get(h, []))), pools.get(h))
                 for h in sorted(set(free) | set(pools)) if h in urls}
        return cls(hosts, tuple(sorted(plain)))

    def slots(self, hosts: Sequence[str] | None = None) -> list[ChunkSlot]:
        """Placement candidates: one per free chunk (`single`), one per pool."""
        out: list[ChunkSlot] = []
        for h in hosts if hosts is not None else sorted(self.hosts):
            st = self.hosts.get(h)
            if st is None:
                continue
            out += [ChunkSlot(h, chunk, cap, single=True) for chunk, cap in st.free_chunks]
            if st.pool_room is not None:
                out.append(ChunkSlot(h, POOL_SLOT, st.pool_room))
        return out


class Allocator:
    """Claims chunks for new disks and copies, across calls, without claiming one twice.

    Args:
        registry: a registry client (its `find`).
        secret: the cluster secret, for the nodes.
        named: `(host, chunk)` pairs already named (the ndb file's), never handed out.
        lease: claim every chunk on its node, renewed from a thread until `complete()`, so
            that a process killed before it is done leaves no chunk behind for good (its
            node reclaims the chunk when the claim runs out; `load --cluster` does this).
    """

    def __init__(self, registry: Any, secret: bytes | None, named: Iterable[tuple[str, str]] = (),
                 lease: bool = False) -> None:
        self.registry, self.secret = registry, secret
        self.storage = Storage.read(registry, named)
        self._slots = self.storage.slots()
        self.claimed: list[tuple[ChunkRef, bool]] = []      # (chunk, made from a pool)
        self.lease = lease
        self._leases: dict[ChunkRef, float] = {}            # claimed chunk -> its node's lease (s)
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def hosts(self) -> list[str]:
        """Hosts offering room, as read."""
        return sorted(self.storage.hosts)

    def choose(self, size: int, copies: int, hosts: Sequence[str] | None = None) -> list[ChunkSlot]:
        """Slots for `copies` copies of a `size`-byte chunk, on distinct hosts.

        Raises:
            NoRoom: not enough hosts have room.
        """
        slots = [s for s in self._slots if hosts is None or s.host in hosts]
        try:
            chosen = place(size, slots, copies)
        except NoRoom as exc:
            raise NoRoom(f"{exc}{self._plain_hint()}") from None
        if len({s.host for s in chosen}) < copies:
            have = len({s.host for s in slots if s.free >= size})
            raise NoRoom(f"{copies} copies of a {size}-byte chunk need {copies} hosts with room; "
                         f"{have} have room ({', '.join(sorted({s.host for s in slots})) or 'no hosts offer chunks'})"
                         f"{'' if have else ': add chunks with geryon node --disk, or a pool with --chunk-pool'}"
                         f"{self._plain_hint()}")
        return chosen

    def _plain_hint(self) -> str:
        """What to do about disks served as plain directories (a load cannot fill those)."""
        plain = self.storage.plain
        if not plain:
            return ""
        return (f"; {', '.join(plain[:3])}{' ...' if len(plain) > 3 else ''} "
                f"{'is a plain directory' if len(plain) == 1 else 'are plain directories'} holding files, not "
                f"{'a chunk' if len(plain) == 1 else 'chunks'}: a load needs empty chunks: give the node an empty "
                f"directory (`geryon node --disk NAME=EMPTY_DIR` makes it a chunk) or a pool (--chunk-pool DIR)")

    def claim(self, slot: ChunkSlot, capacity: int, replica: bool = False) -> ChunkRef:
        """Make the chosen slot a chunk of (at least) `capacity` bytes and return it."""
        st = self.storage.hosts[slot.host]
        if slot.path == POOL_SLOT:
            ref = self._make(st, capacity, replica)
            made = True
        else:
            ref = ChunkRef(slot.host, slot.path, st.node_url)
            with ref.open(self.secret) as remote:
                usage = remote.usage()
                if usage.get("used"):
                    raise NoRoom(f"{ref.where} is no longer empty ({usage['used']} bytes): try again")
                remote.call("role", replica=replica)
                if self.lease:
                    self._leased(ref, remote.call("claim"))
            made = False
        self._charge(slot, capacity)
        self.claimed.append((ref, made))
        return ref

    # -- leases -------------------------------------------------------------------------
    def _leased(self, ref: ChunkRef, answer: Any) -> None:
        lease = float(answer.get("lease", 0)) if isinstance(answer, dict) else 0.0
        if lease <= 0:
            return                       # an older node: it does not reclaim
        self._leases[ref] = lease
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._keep, name="geryon-claims", daemon=True)
            self._keeper.start()

    def _keep(self) -> None:
        """Renew every claim, three times per (shortest) lease."""
        while not self._stop.wait(min(self._leases.values()) / 3):
            for ref in list(self._leases):
                try:
                    with ref.open(self.secret) as remote:
                        remote.call("claim")
                except Exception as exc:  # noqa: BLE001 - a node away now and then: try again next time
                    log.debug("renewing the claim on %s: %s", ref.where, exc)

    def close(self) -> None:
        """Stop renewing claims; idempotent (claims left run out on their nodes)."""
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join()
            self._keeper = None

    def complete(self) -> None:
        """The chunks are filled and about to be named: drop their claims (keep them)."""
        self.close()
        for ref in list(self._leases):
            try:
                with ref.open(self.secret) as remote:
                    remote.call("claim", done=True)
            except Exception as exc:  # noqa: BLE001
                raise GeryonError(f"{ref.where}: cannot complete its claim: {exc}") from exc
        self._leases.clear()

    def _make(self, st: HostStorage, capacity: int, replica: bool) -> ChunkRef:
        from geryon.net.connection import NodeConnection, raise_for

        with NodeConnection(st.node_url, self.secret) as conn:
            body = json.dumps({"capacity": capacity, "replica": replica, "claim": self.lease}).encode()
            status, data = conn.request("POST", "/v1/chunks", body, {"Content-Type": "application/json"})
        if status == 404 and b"nopool" in data:
            raise NoRoom(f"{st.host} has no chunk pool")
        if status == 507:
            raise DiskFull(f"{st.host}: {json.loads(data).get('error')}")
        raise_for(status, data, st.node_url)
        result = json.loads(data)["result"]
        name = result["chunk"]
        log.info("made chunk %s!%s (%d bytes)", st.host, name, capacity)
        ref = ChunkRef(st.host, name, st.node_url)
        if self.lease:
            self._leased(ref, result)
        return ref

    def _charge(self, slot: ChunkSlot, size: int) -> None:
        i = self._slots.index(slot)
        if slot.single:
            del self._slots[i]
        else:
            self._slots[i] = replace(slot, free=max(0, slot.free - size))

    def release_all(self) -> None:
        """Undo every claim (after a failure)."""
        self.close()
        self._leases.clear()
        for ref, made in reversed(self.claimed):
            give_back(ref, self.secret, made)
        self.claimed.clear()


def give_back(ref: ChunkRef, secret: bytes | None, made: bool | None = None) -> None:
    """Undo a claim: a chunk made from a pool is deleted (`made`, or None: try), any other
    is emptied and made writable again, a free chunk once more. Failures are logged."""
    from fs import errors as fserrors

    from geryon.net.connection import NodeConnection

    try:
        if made is not False:
            with NodeConnection(ref.node_url, secret) as conn:
                status, _ = conn.request("DELETE", f"/v1/chunks/{ref.chunk}")
            if status < 300:
                return
        with ref.open(secret) as remote:
            remote.call("clear")
            remote.call("role", replica=False)
    except (GeryonError, fserrors.FSError, OSError) as exc:
        log.warning("could not give %s back: %s", ref.where, exc)


def new_chunk(registry: Any, secret: bytes | None, capacity: int, host: str | None = None,
              named: Iterable[tuple[str, str]] = ()) -> ChunkRef:
    """A new chunk of `capacity` bytes on the host with the most room (or on `host`).

    Raises:
        NoRoom: no host (or not `host`) has a free chunk or pool room that big.
        UnknownDisk: `host` offers no chunks at all.
    """
    alloc = Allocator(registry, secret, named)
    if host is not None and host not in alloc.storage.hosts:
        raise UnknownDisk(f"{host}: no such node offers chunks (no free chunk, no pool)")
    slot = alloc.choose(capacity, 1, None if host is None else [host])[0]
    return alloc.claim(slot, capacity)
