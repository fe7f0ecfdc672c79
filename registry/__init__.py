"""The Geryon service registry: store, text format, server, client, discovery.

May import `ndb`; nothing else of Geryon's.
"""
from __future__ import annotations

from registry.errors import RegistryError

__all__ = ["RegistryError"]
