"""The registry package's error root; messages follow Inferno registry(4).

Each error is a noun for what went wrong; `str(err)` is the Inferno error string where
Inferno has one (`duplicate service name`, `permission denied`, ...). This module does
not translate lower errors: servers and clients do that at their edges.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class RegistryError(Exception):
    """A registry operation failed."""

    #: short machine-readable name carried over the wire (see `error_from_wire`).
    kind = "error"


class BadRequest(RegistryError):
    """A service name, attribute list, query or message is malformed."""

    kind = "bad"


class DuplicateService(RegistryError):
    """A service of that name is already registered by someone else."""

    kind = "duplicate"


class ServiceNotFound(RegistryError):
    """No service of that name is registered."""

    kind = "notfound"


class PermissionDenied(RegistryError):
    """Only a service's owner may change or remove it."""

    kind = "permission"


class RegistryFull(RegistryError):
    """The registry holds as many services (or sessions) as it is allowed to."""

    kind = "full"


class AuthenticationFailed(RegistryError):
    """A request's signature is missing, wrong, stale or replayed (HTTP 401)."""

    kind = "auth"


class Conflict(RegistryError):
    """What a change was based on changed meanwhile (read again, then retry)."""

    kind = "conflict"


class RegistryUnavailable(RegistryError):
    """No registry could be reached (none configured, none discovered, or it is down)."""

    kind = "unavailable"


_KINDS: dict[str, type[RegistryError]] = {
    cls.kind: cls
    for cls in (RegistryError, BadRequest, DuplicateService, ServiceNotFound, PermissionDenied,
                RegistryFull, AuthenticationFailed, Conflict, RegistryUnavailable)
}


def error_from_wire(kind: str, message: str) -> RegistryError:
    """Rebuild the error a server reported as ``{"error": message, "kind": kind}``."""
    return _KINDS.get(kind, RegistryError)(message)
