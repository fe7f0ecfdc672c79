"""The registry package's error root; messages follow Inferno registry(4)."""
from __future__ import annotations


class RegistryError(Exception):
    """A registry operation failed."""
