"""The state file: persist entries saved across registry restarts.

JSON (never pickle), written atomically: a temporary file in the same directory
(`.<name>.<random>`), fsync, rename. Only persist entries are saved; everything else is
soft state that registrants re-announce. A registry killed while writing leaves its
temporary file: `StateLock.take` (on start) holds a lock file `.<name>.lock` for the
registry's life and removes such leftovers, unless another live registry holds the lock.
This module does not decide when to save (the server does).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from pathlib import Path

from registry import jsondoc
from registry.errors import RegistryError
from registry.store import Service

log = logging.getLogger(__name__)

FORMAT_VERSION = 1

DEFAULT_MAX_STATE = 256 << 20
"""Largest state file read, in bytes (persist entries are few and small)."""


_STATE = {"format": jsondoc.INT, "services": jsondoc.LIST}
_ITEM = {"owner": jsondoc.STR, "service": jsondoc.LIST}


def save_state(path: Path, entries: list[tuple[Service, str]]) -> None:
    """Atomically replace `path` with `entries` (`(service, owner)` pairs).

    Raises:
        RegistryError: the file cannot be written.
    """
    doc = {"format": FORMAT_VERSION,
           "services": [{"service": s.to_wire(), "owner": owner} for s, owner in entries]}
    data = json.dumps(doc, indent=1).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise RegistryError(f"{path}: {exc.strerror or exc}") from exc


def load_state(path: Path) -> list[tuple[Service, str]]:
    """The entries saved in `path`; none if it does not exist.

    Raises:
        RegistryError: the file exists but cannot be read or is not a state file.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RegistryError(f"{path}: {exc.strerror}") from exc
    try:
        doc = jsondoc.load_object(data, _STATE, what=str(path), max_bytes=DEFAULT_MAX_STATE)
    except jsondoc.BadJSON as exc:
        raise RegistryError(f"not a registry state file: {exc}") from None
    try:
        if doc.get("format") != FORMAT_VERSION:
            raise ValueError(f"unknown format {doc.get('format')!r}")
        out = []
        seen: set[str] = set()
        for item in doc["services"]:
            owner = jsondoc.check(item, _ITEM, what="entry")["owner"]
            service = Service.from_wire(item["service"])
            if service.name in seen:
                raise ValueError(f"duplicate service name {service.name}")
            seen.add(service.name)
            out.append((service, owner))
        return out
    except (ValueError, KeyError, TypeError, AttributeError, RegistryError) as exc:
        raise RegistryError(f"{path}: not a registry state file: {exc}") from None


class StateLock:
    """The lock a registry holds on its state file's directory entry while it runs."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def take(cls, path: Path) -> StateLock | None:
        """Lock `path`'s lock file and remove the temporary files of killed registries.

        Returns None (and removes nothing) when another live registry holds the lock.

        Raises:
            RegistryError: the lock file cannot be made.
        """
        lock = path.parent / f".{path.name}.lock"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise RegistryError(f"{lock}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            log.warning("%s: another registry is using this state file", path)
            return None
        for leftover in path.parent.glob(f".{path.name}.*"):
            if leftover != lock and leftover.is_file() and not leftover.is_symlink():
                log.info("removing %s, left by a registry killed while saving its state", leftover)
                leftover.unlink(missing_ok=True)
        return cls(fd)

    def release(self) -> None:
        """Drop the lock; idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
