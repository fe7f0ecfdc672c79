"""Bounded JSON: every JSON document a server reads (request bodies, WebSocket messages,
the state file) is parsed here, with limits on size and nesting depth, and checked
against a small schema of field kinds.

A hostile document costs at most its size in linear time and is refused with one line
(`BadRequest`, which the servers answer as 400): never a RecursionError, a TypeError in a
handler, or a 500. Not here: deciding what to do with a valid document (the handlers),
or HTTP (the servers turn `BadRequest` into a response).
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from registry.errors import BadRequest

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1 << 20
"""Largest JSON document accepted by `loads`, in bytes (callers pass their route's limit)."""

DEFAULT_MAX_DEPTH = 32
"""Deepest nesting of arrays and objects accepted (our documents nest at most 5 deep)."""

# A JSON string (escapes included), or one bracket: what the depth scan looks at.
_SCAN = re.compile(rb'"(?:[^"\\]+|\\.)*"?|[\[\]{}]', re.DOTALL)


class BadJSON(BadRequest, ValueError):
    """A JSON document is too big, too deep, malformed, or not of the expected shape.

    Also a ValueError, so handlers that refuse malformed input on ValueError refuse it.
    """


class NotJSON(BadJSON):
    """A document that does not parse as JSON at all."""


def depth_of(data: bytes) -> int:
    """The deepest nesting of `[` and `{` in `data`, brackets inside strings not counted.

    Linear in len(data); the document need not be valid JSON.
    """
    depth = deepest = 0
    for match in _SCAN.finditer(data):
        c = match.group()
        if c in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif c in (b"]", b"}"):
            depth -= 1
    return deepest


def loads(data: bytes | str, *, what: str = "request", max_bytes: int = DEFAULT_MAX_BYTES,
          max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse one JSON document within limits.

    Args:
        data: the document.
        what: names the document in errors (`request`, a file name, ...).
        max_bytes: refuse documents longer than this.
        max_depth: refuse documents nested deeper than this.

    Raises:
        BadJSON: `WHAT: ...` in one line.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise BadJSON(f"{what}: JSON document of {len(raw)} bytes is over the limit of {max_bytes}")
    # Fewer brackets than the limit cannot nest past it: skip the scan (most documents).
    depth = 0 if raw.count(b"[") + raw.count(b"{") <= max_depth else depth_of(raw)
    if depth > max_depth:
        raise BadJSON(f"{what}: JSON nested {depth} deep, over the limit of {max_depth}")
    try:
        return json.loads(raw)
    except RecursionError:          # cannot happen below the depth limit; kept as a backstop
        raise BadJSON(f"{what}: JSON nested too deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotJSON(f"{what}: bad JSON: {str(exc).splitlines()[0][:200]}") from None


@dataclass(frozen=True)
class Kind:
    """What a field must hold: a description for messages and a check."""

    description: str
    check: Callable[[Any], bool]
    optional: bool = False


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_pairs(v: Any) -> bool:
    if isinstance(v, Mapping):
        return all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())
    return isinstance(v, list) and all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], str) for p in v)


STR = Kind("a string", lambda v: isinstance(v, str))
INT = Kind("an integer", _is_int)
NUMBER = Kind("a number", lambda v: _is_int(v) or isinstance(v, float))
BOOL = Kind("true or false", lambda v: isinstance(v, bool))
OBJECT = Kind("an object", lambda v: isinstance(v, dict))
LIST = Kind("a list", lambda v: isinstance(v, list))
OBJECTS = Kind("a list of objects", lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v))
STRS = Kind("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
PAIRS = Kind("a list of [attr, value] string pairs", _is_pairs)
ANY = Kind("anything", lambda v: True)


def optional(kind: Kind) -> Kind:
    """`kind`, or the field absent or null."""
    return Kind(kind.description, kind.check, optional=True)


def check(doc: Any, fields: Mapping[str, Kind], *, what: str = "request") -> dict[str, Any]:
    """`doc` if it is an object whose fields have their kinds; unknown fields are allowed.

    Raises:
        BadJSON: `WHAT: "FIELD" must be KIND` (or `WHAT is not a JSON object`).
    """
    if not isinstance(doc, dict):
        raise BadJSON(f"{what} is not a JSON object")
    for name, kind in fields.items():
        value = doc.get(name)
        if value is None:
            if kind.optional:
                continue
            raise BadJSON(f'{what}: "{name}" is missing')
        if not kind.check(value):
            raise BadJSON(f'{what}: "{name}" must be {kind.description}')
    return doc


def load_object(data: bytes | str, fields: Mapping[str, Kind], *, what: str = "request",
                max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH) -> dict[str, Any]:
    """`loads` then `check`: the usual way a handler reads its body."""
    return check(loads(data, what=what, max_bytes=max_bytes, max_depth=max_depth), fields, what=what)


__all__ = ["ANY", "BOOL", "BadJSON", "NotJSON", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_DEPTH", "INT", "Kind", "LIST",
           "NUMBER", "OBJECT", "OBJECTS", "PAIRS", "STR", "STRS", "check", "depth_of", "load_object", "loads",
           "optional"]
