"""`Registration`: a service kept registered for the length of a `with` block.

It only calls the `Registry` it is given; liveness (sessions, heartbeats, re-announce
after a registry restart) belongs to that registry's client, not to this module.
"""
from __future__ import annotations

import logging
from types import TracebackType

from registry.errors import RegistryError
from registry.protocol import Registry
from registry.store import AttrsLike, Service, as_pairs, merged

log = logging.getLogger(__name__)


class Registration:
    """Register `name` on enter (or `open()`), unregister on exit (or `close()`).

    Args:
        registry: where to register (a `Store`, a `RegistryClient`, ...).
        name: the service name, by convention its address (`tcp!host!port`).
        attrs: its attributes.
        persist: add `persist 1`: the entry outlives this registration and its process.
    """

    def __init__(self, registry: Registry, name: str, attrs: AttrsLike = (), *,
                 persist: bool = False) -> None:
        self.registry = registry
        self.name = name
        pairs = as_pairs(attrs)
        self.attrs = merged(pairs, (("persist", "1"),)) if persist else pairs
        self.service: Service | None = None
        self._closed = False

    @property
    def persistent(self) -> bool:
        """True if the entry stays after `close()`."""
        return Service(self.name, self.attrs).persistent

    def open(self) -> Service:
        """Register the service; raises RegistryError as the registry does."""
        self.service = self.registry.register(self.name, self.attrs)
        return self.service

    def update(self, attrs: AttrsLike) -> Service:
        """Change attributes of the registered service."""
        self.service = self.registry.update(self.name, attrs)
        self.attrs = self.service.attrs
        return self.service

    def close(self) -> None:
        """Unregister, unless persistent. Idempotent; never raises RegistryError."""
        if self._closed:
            return
        self._closed = True
        if self.service is None or self.persistent:
            return
        try:
            self.registry.unregister(self.name)
        except RegistryError as exc:
            log.debug("unregister %s: %s", self.name, exc)

    def __enter__(self) -> Registration:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
