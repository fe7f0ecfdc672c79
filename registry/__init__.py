"""The Geryon service registry: store, text format, server, client, discovery.

May import `ndb`; nothing else of Geryon's. The public surface is re-exported here; the
network parts (client, server, discovery) load on first use, so `import registry` stays
light for code that only needs the pure store and text format.

    store = registry.Store()                                  # pure, in memory
    with registry.RegistryClient("tcp!host!6675", secret=s) as client, \
            registry.Registration(client, "tcp!me!7070", {"svc": "cpu"}):
        client.find({"svc": "*"})
"""
from __future__ import annotations

import importlib
from typing import Any

from registry.errors import (AuthenticationFailed, BadRequest, DuplicateService, PermissionDenied,
                             RegistryError, RegistryFull, RegistryUnavailable, ServiceNotFound)
from registry.protocol import Registry
from registry.registration import Registration
from registry.store import ANY, Event, EventKind, Service, Store
from registry.text import format_line, parse_line, quote, split

_LAZY = {
    "RegistryClient": "registry.client",
    "Watch": "registry.watch",
    "RegistryServer": "registry.server",
    "ServerConfig": "registry.server",
    "discover": "registry.discovery",
    "parse_registry_url": "registry.discovery",
    "auth_middleware": "registry.auth",
    "sign_headers": "registry.auth",
    "create_secret": "registry.auth",
    "load_secret": "registry.auth",
}

__all__ = [
    "ANY", "AuthenticationFailed", "BadRequest", "DuplicateService", "Event", "EventKind",
    "PermissionDenied", "Registration", "Registry", "RegistryError", "RegistryFull",
    "RegistryUnavailable", "Service", "ServiceNotFound", "Store", "format_line", "parse_line",
    "quote", "split", *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'registry' has no attribute {name!r}")
