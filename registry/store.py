"""The registry's state: services, their owners, session leases and the event log.

Pure: no I/O, no clocks, no threads. Time is a parameter (`touch(session, now)`,
`expire(now)`), so liveness rules are tested without sleeping. Semantics follow Inferno
registry(4): a service is `name attr val ...`; `persist` with a non-zero value keeps it
after its session ends; only its owner may change or remove it; `find` is the AND of
`attr == val`, where the value `*` means "has the attribute". `find` looks only at the
services holding the query's rarest pair (an index by `(attr, val)` and by `attr`), so a
selective query costs what it returns, not what the registry holds. The store does not know
about sockets, files or text; see `registry.server` and `registry.text`; its values
(`Service`, `Event`) are `registry.service`'s, importable from here as before.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from registry.errors import (BadRequest, DuplicateService, PermissionDenied, RegistryFull,
                             ServiceNotFound)
from registry.service import ANY, AttrsLike, Event, EventKind, Service, as_pairs, merged
from registry.text import Pairs

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT = 1.0
"""Seconds between a registrant's heartbeats."""

DEFAULT_DEAD_AFTER = 5.0
"""Seconds of silence after which a session (and its non-persist services) is dead."""

DEFAULT_MAX_SERVICES = 100_000
"""Most services one registry holds; more registrations fail with `registry full`."""

DEFAULT_EVENT_HISTORY = 4096
"""Events kept for watchers that reconnect with an older version."""

DEFAULT_MAX_NAME = 1024
"""Longest service name, attribute name or value, in characters."""

DEFAULT_MAX_PAIRS = 256
"""Most attribute/value pairs in one service."""

def _seq_of(entry: _Entry) -> int:
    return entry.seq


def _drop(index: dict[Any, dict[str, None]], key: Any, name: str) -> None:
    names = index.get(key)
    if names is not None:
        names.pop(name, None)
        if not names:
            del index[key]


@dataclass
class _Entry:
    service: Service
    owner: str
    session: str | None
    seq: int = 0              # registration order (find answers in it)


@dataclass
class _Lease:
    owner: str
    last_seen: float
    names: set[str] = field(default_factory=set)

    def expired(self, now: float, dead_after: float) -> bool:
        return now - self.last_seen > dead_after


class Store:
    """Services by name, in registration order, with owners, leases and an event log.

    Args:
        dead_after: seconds of silence after which `expire` ends a session.
        max_services: most services held at once.
        history: events kept for `events_since`.
        max_name: longest name, attribute or value.
        max_pairs: most pairs per service.
    """

    def __init__(self, *, dead_after: float = DEFAULT_DEAD_AFTER,
                 max_services: int = DEFAULT_MAX_SERVICES, history: int = DEFAULT_EVENT_HISTORY,
                 max_name: int = DEFAULT_MAX_NAME, max_pairs: int = DEFAULT_MAX_PAIRS) -> None:
        self.dead_after = dead_after
        self.max_services = max_services
        self.max_name = max_name
        self.max_pairs = max_pairs
        self._entries: dict[str, _Entry] = {}
        # names by (attr, val) and by attr, in insertion order (dicts used as ordered sets)
        self._by_pair: dict[tuple[str, str], dict[str, None]] = {}
        self._by_attr: dict[str, dict[str, None]] = {}
        self._seq = 0
        self._leases: dict[str, _Lease] = {}
        self._events: deque[Event] = deque(maxlen=history)
        self._version = 0

    # -- queries ---------------------------------------------------------------------
    @property
    def version(self) -> int:
        """The version of the latest event (0 before any)."""
        return self._version

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> Service | None:
        """The service called `name`, or None."""
        entry = self._entries.get(name)
        return entry.service if entry else None

    def owner_of(self, name: str) -> str | None:
        """Who owns `name`, or None if there is no such service."""
        entry = self._entries.get(name)
        return entry.owner if entry else None

    def session_of(self, name: str) -> str | None:
        """The session keeping `name` alive (None for session-less entries)."""
        entry = self._entries.get(name)
        return entry.session if entry else None

    def index(self) -> list[Service]:
        """Every service, in registration order (registry(4) `index`)."""
        return [e.service for e in self._entries.values()]

    def find(self, query: AttrsLike = ()) -> list[Service]:
        """Services matching every `attr val` of `query` (`*` = present; empty = all)."""
        pairs = as_pairs(query)
        if not pairs:
            return self.index()
        fewest: dict[str, None] | None = None
        for attr, val in pairs:
            names = self._by_attr.get(attr) if val == ANY else self._by_pair.get((attr, val))
            if not names:
                return []
            if fewest is None or len(names) < len(fewest):
                fewest = names
        assert fewest is not None
        found = [e for e in map(self._entries.__getitem__, fewest) if e.service.matches(pairs)]
        found.sort(key=_seq_of)
        return [e.service for e in found]

    def persistent(self) -> list[tuple[Service, str]]:
        """`(service, owner)` of every persist entry, for saving to disk."""
        return [(e.service, e.owner) for e in self._entries.values() if e.service.persistent]

    def events_since(self, version: int) -> list[Event] | None:
        """Events after `version`, or None if the log no longer reaches back that far."""
        if version >= self._version:
            return []
        if not self._events or self._events[0].version > version + 1:
            return None
        return [e for e in self._events if e.version > version]

    # -- changes ---------------------------------------------------------------------
    def register(self, name: str, attrs: AttrsLike = (), *, owner: str = "",
                 session: str | None = None) -> Service:
        """Add a service (registry(4) `new`).

        Re-registering a name this `session` already holds, or a persist entry of the
        same owner that no session holds (say, reloaded after a restart), adopts it with
        the new attributes: that is how a registrant re-announces itself.

        Raises:
            BadRequest: bad name or attributes.
            DuplicateService: the name is taken.
            RegistryFull: `max_services` reached.
            ServiceNotFound: `session` was never opened (or has ended).
        """
        pairs = self._checked(name, attrs)
        if session is not None and session not in self._leases:
            raise ServiceNotFound("session is not open")
        existing = self._entries.get(name)
        if existing is not None:
            adopt = ((session is not None and existing.session == session)
                     or (existing.session is None and existing.service.persistent
                         and existing.owner == owner))
            if not adopt:
                raise DuplicateService("duplicate service name")
            if existing.owner != owner:
                raise PermissionDenied("permission denied")
            self._attach(name, existing, session)
            if existing.service.attrs != pairs:
                self._set(existing, Service(name, pairs))
                self._emit(EventKind.UPDATE, existing.service)
            return existing.service
        if len(self._entries) >= self.max_services:
            raise RegistryFull("registry full")
        self._seq += 1
        entry = _Entry(Service(name, pairs), owner, None, self._seq)
        self._entries[name] = entry
        self._indexed(entry.service)
        self._attach(name, entry, session)
        self._emit(EventKind.ADD, entry.service)
        return entry.service

    def update(self, name: str, attrs: AttrsLike, *, owner: str = "") -> Service:
        """Add or change attributes of `name` (a write to its registry(4) file).

        Raises:
            ServiceNotFound, PermissionDenied, BadRequest.
        """
        new = self._checked(name, attrs)
        entry = self._owned(name, owner)
        pairs = merged(entry.service.attrs, new)
        if len(pairs) > self.max_pairs:
            raise BadRequest("too many attributes")
        if pairs != entry.service.attrs:
            self._set(entry, Service(name, pairs))
            self._emit(EventKind.UPDATE, entry.service)
        return entry.service

    def replace(self, name: str, attrs: AttrsLike, *, owner: str = "") -> Service:
        """Set the attributes of `name` to exactly `attrs` (attributes may disappear).

        Raises:
            ServiceNotFound, PermissionDenied, BadRequest.
        """
        pairs = self._checked(name, attrs)
        entry = self._owned(name, owner)
        if pairs != entry.service.attrs:
            self._set(entry, Service(name, pairs))
            self._emit(EventKind.UPDATE, entry.service)
        return entry.service

    def unregister(self, name: str, *, owner: str = "") -> None:
        """Remove `name` (registry(4): its owner removes the service file).

        Raises:
            ServiceNotFound, PermissionDenied.
        """
        entry = self._owned(name, owner)
        self._remove(name, entry)

    # -- sessions --------------------------------------------------------------------
    def open_session(self, session: str, owner: str, now: float) -> None:
        """Start (or refresh) the lease of `session`, held by `owner`."""
        lease = self._leases.get(session)
        if lease is None:
            self._leases[session] = _Lease(owner, now)
        else:
            lease.owner, lease.last_seen = owner, now

    def touch(self, session: str, now: float) -> bool:
        """Record that `session` was heard from at `now`; False if it is not open."""
        lease = self._leases.get(session)
        if lease is None:
            return False
        lease.last_seen = max(lease.last_seen, now)
        return True

    def has_session(self, session: str) -> bool:
        """True while `session` is open."""
        return session in self._leases

    def sessions(self) -> list[str]:
        """Open sessions."""
        return list(self._leases)

    def services_of(self, session: str) -> list[Service]:
        """Services held by `session`."""
        lease = self._leases.get(session)
        if lease is None:
            return []
        return [self._entries[n].service for n in lease.names if n in self._entries]

    def close_session(self, session: str) -> list[Service]:
        """End `session`: its services go, except persist ones, which stay session-less.

        registry(4): persist is read when the file is closed. Returns the removed services.
        """
        lease = self._leases.pop(session, None)
        if lease is None:
            return []
        removed = []
        for name in list(lease.names):
            entry = self._entries.get(name)
            if entry is None or entry.session != session:
                continue
            if entry.service.persistent:
                entry.session = None
            else:
                self._remove(name, entry)
                removed.append(entry.service)
        return removed

    def expire(self, now: float) -> list[str]:
        """End every session silent for more than `dead_after`; return their ids."""
        dead = [s for s, lease in self._leases.items() if lease.expired(now, self.dead_after)]
        for session in dead:
            self.close_session(session)
        return dead

    # -- internals -------------------------------------------------------------------
    def _checked(self, name: str, attrs: AttrsLike) -> Pairs:
        if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name
                or "\0" in name or len(name) > self.max_name):
            raise BadRequest("bad service name")
        pairs = as_pairs(attrs)
        deduped = tuple(dict(pairs).items())
        if len(deduped) > self.max_pairs:
            raise BadRequest("too many attributes")
        for attr, val in deduped:
            if not attr or "\0" in attr or "\0" in val:
                raise BadRequest("bad attribute name")
            if len(attr) > self.max_name or len(val) > self.max_name:
                raise BadRequest("attribute too long")
        return deduped

    def _owned(self, name: str, owner: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise ServiceNotFound("service does not exist")
        if entry.owner != owner:
            raise PermissionDenied("permission denied")
        return entry

    def _attach(self, name: str, entry: _Entry, session: str | None) -> None:
        if entry.session is not None and entry.session != session:
            old = self._leases.get(entry.session)
            if old is not None:
                old.names.discard(name)
        entry.session = session
        if session is not None:
            self._leases[session].names.add(name)

    def _indexed(self, service: Service) -> None:
        for attr, val in service.attrs:
            self._by_pair.setdefault((attr, val), {})[service.name] = None
            self._by_attr.setdefault(attr, {})[service.name] = None

    def _unindexed(self, service: Service) -> None:
        for attr, val in service.attrs:
            _drop(self._by_pair, (attr, val), service.name)
            _drop(self._by_attr, attr, service.name)

    def _set(self, entry: _Entry, service: Service) -> None:
        """Change an entry's service, keeping the indexes true."""
        self._unindexed(entry.service)
        entry.service = service
        self._indexed(service)

    def _remove(self, name: str, entry: _Entry) -> None:
        del self._entries[name]
        self._unindexed(entry.service)
        if entry.session is not None and entry.session in self._leases:
            self._leases[entry.session].names.discard(name)
        self._emit(EventKind.REMOVE, entry.service)

    def _emit(self, kind: EventKind, service: Service) -> None:
        self._version += 1
        self._events.append(Event(self._version, kind, service))
