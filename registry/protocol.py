"""The `Registry` protocol: what the in-memory store and the network client both offer.

Only the shape; it has no behaviour. A contract test (tests/registry/test_contract.py)
runs the same checks on every implementation.
"""
from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from registry.store import AttrsLike, Service

log = logging.getLogger(__name__)


@runtime_checkable
class Registry(Protocol):
    """A registry of services with attributes (Inferno registry(4))."""

    def register(self, name: str, attrs: AttrsLike = ...) -> Service:
        """Add `name` with `attrs`; `persist 1` keeps it after its registrant goes."""
        ...

    def update(self, name: str, attrs: AttrsLike) -> Service:
        """Add or change attributes of a service the caller owns."""
        ...

    def unregister(self, name: str) -> None:
        """Remove a service the caller owns."""
        ...

    def find(self, query: AttrsLike = ...) -> list[Service]:
        """Services matching every `attr val` of `query` (`*`: attribute present)."""
        ...

    def index(self) -> list[Service]:
        """Every service."""
        ...
