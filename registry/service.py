"""The registry's values: a service (`name attr val ...`), the events that change it.

Frozen values with their text and JSON forms: `Service` (Inferno registry(4)'s service:
its attributes in order, one value each; `persist` keeps it past its session), `Event` and
`EventKind` (what `watch` streams), `as_pairs` and `merged` (attribute lists as the store
takes them). Pure: no I/O.

Not here: who owns a service, leases, the index and the event log (`registry.store`); the
quoting of a line (`registry.text`).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Union

from registry.errors import BadRequest
from registry.text import Pairs, format_line, parse_line

log = logging.getLogger(__name__)

ANY = "*"
"""A query value that matches any value of a present attribute (registry(4))."""

AttrsLike = Union[Mapping[str, str], Iterable[tuple[str, str]]]


def as_pairs(attrs: AttrsLike) -> Pairs:
    """Normalise a mapping or pair list to a tuple of `(attr, value)` string pairs."""
    items = attrs.items() if isinstance(attrs, Mapping) else attrs
    out = []
    for item in items:
        try:
            attr, val = item
        except (TypeError, ValueError):
            raise BadRequest("odd attribute/value pairs") from None
        if not isinstance(attr, str) or not isinstance(val, str):
            raise BadRequest("attributes and values must be strings")
        out.append((attr, val))
    return tuple(out)


def merged(base: Pairs, new: Pairs) -> Pairs:
    """`base` with `new` applied: existing attributes change in place, new ones append."""
    out = dict(base)
    for attr, val in new:
        out[attr] = val                                # dicts keep insertion order
    return tuple(out.items())


@dataclass(frozen=True)
class Service:
    """One registered service: a name and its attributes (one value each, in order)."""

    name: str
    attrs: Pairs = ()

    def get(self, attr: str, default: str | None = None) -> str | None:
        """The value of `attr`, or `default`."""
        for a, v in self.attrs:
            if a == attr:
                return v
        return default

    def matches(self, query: Pairs) -> bool:
        """True if every `(attr, val)` in `query` holds (`*` = attribute present)."""
        mine = dict(self.attrs)
        for attr, val in query:
            have = mine.get(attr)
            if have is None or (val != ANY and have != val):
                return False
        return True

    @property
    def persistent(self) -> bool:
        """registry(4): an attribute `persist` with a non-zero value."""
        v = self.get("persist")
        return v is not None and v not in ("", "0")

    def line(self) -> str:
        """The service as Inferno prints it: `name attr val ...`, `%q`-quoted."""
        return format_line(self.name, self.attrs)

    @classmethod
    def parse(cls, line: str) -> Service:
        """Parse one `name attr val ...` line."""
        name, pairs = parse_line(line)
        return cls(name, pairs)

    def to_wire(self) -> list[Any]:
        """JSON form: `[name, [[attr, val], ...]]`."""
        return [self.name, [list(p) for p in self.attrs]]

    @classmethod
    def from_wire(cls, data: Any) -> Service:
        """Inverse of `to_wire`; raises BadRequest on anything malformed."""
        if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], str)
                and isinstance(data[1], list)):
            raise BadRequest("malformed service")
        return cls(data[0], as_pairs(data[1]))


class EventKind(str, Enum):
    """What happened to a service."""

    ADD = "add"
    UPDATE = "update"
    REMOVE = "remove"


@dataclass(frozen=True)
class Event:
    """A change in the registry; `version` increases by one per event."""

    version: int
    kind: EventKind
    service: Service

    def line(self) -> str:
        """`kind name attr val ...`, as `geryon watch` prints it."""
        return f"{self.kind.value} {self.service.line()}"

    def to_wire(self) -> dict[str, Any]:
        """JSON form of the event."""
        return {"version": self.version, "kind": self.kind.value, "service": self.service.to_wire()}

    @classmethod
    def from_wire(cls, data: Any) -> Event:
        """Inverse of `to_wire`."""
        try:
            return cls(int(data["version"]), EventKind(data["kind"]), Service.from_wire(data["service"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest("malformed event") from exc
