"""A node's job pack cache: unpacked packs by digest, pruned least recently used first past a size.

Each pack lives in `<root>/<sha256>/` (unpacked by `geryon.mapreduce.jobpack.unpack`); its directory's
modification time is its last use (so the order survives a restart). After each new pack,
and when asked, packs are removed oldest first while the cache holds more than `max_bytes`,
except packs an attempt is running from and packs used in the last `min_idle` seconds (a
job still running elsewhere may send another attempt at any moment). Not here: the routes
(`geryon.node.jobservice`), the pack format (`geryon.mapreduce.jobpack`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_PACK_CACHE = 512 << 20
"""Bytes of unpacked job packs a node keeps before it removes the least recently used."""

DEFAULT_PACK_IDLE = 600.0
"""Seconds after its last use during which a pack is never removed."""


def _size(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


class PackCache:
    """Unpacked job packs under `root`, bounded by `max_bytes` (see the module docstring)."""

    def __init__(self, root: str, max_bytes: int = DEFAULT_PACK_CACHE, min_idle: float = DEFAULT_PACK_IDLE) -> None:
        self.root, self.max_bytes, self.min_idle = root, max_bytes, min_idle
        self._in_use: dict[str, int] = {}
        self._last_use_ns = 0
        os.makedirs(root, exist_ok=True)

    def _touch(self, path: str) -> None:
        """Mark a use: the pack's mtime becomes now, later than any use before it.

        Explicit nanosecond stamps, strictly increasing: `os.utime(path)` alone takes the
        kernel's coarse clock (a few ms), so uses in quick succession would tie.
        """
        stamp = max(time.time_ns(), self._last_use_ns + 1)
        self._last_use_ns = stamp
        with contextlib.suppress(OSError):
            os.utime(path, ns=(stamp, stamp))

    def path(self, digest: str) -> str:
        return os.path.join(self.root, digest)

    def has(self, digest: str) -> bool:
        """Whether the pack is here (a use: it becomes the most recent)."""
        path = self.path(digest)
        if not os.path.isdir(path):
            return False
        self._touch(path)
        return True

    def put(self, data: bytes, digest: str, limits: Any = None) -> str:
        """Unpack a pack (checked against `digest`, under `limits`), then prune. Raises JobPackError."""
        from geryon.mapreduce.jobpack import unpack

        path = unpack(data, self.root, digest, limits)
        self._touch(path)
        self.prune()
        return path

    @contextlib.contextmanager
    def using(self, digest: str) -> Iterator[str]:
        """The pack's directory, kept while the block runs (an attempt from it)."""
        self._in_use[digest] = self._in_use.get(digest, 0) + 1
        try:
            self.has(digest)
            yield self.path(digest)
        finally:
            self._in_use[digest] -= 1
            if not self._in_use[digest]:
                del self._in_use[digest]

    def prune(self, now: float | None = None) -> list[str]:
        """Remove least recently used packs past the bound; returns the digests removed."""
        now = time.time() if now is None else now
        packs = []
        for name in os.listdir(self.root):
            path = os.path.join(self.root, name)
            if name.startswith(".") or ".tmp-" in name or not os.path.isdir(path) or os.path.islink(path):
                continue
            with contextlib.suppress(OSError):
                packs.append((os.stat(path).st_mtime_ns, name, _size(path)))
        total = sum(size for _, _, size in packs)
        removed = []
        for mtime_ns, name, size in sorted(packs):
            if total <= self.max_bytes:
                break
            mtime = mtime_ns / 1e9
            if name in self._in_use or now - mtime < self.min_idle:
                continue
            log.info("removing job pack %s (%d bytes, unused for %.0f s): the pack cache is full",
                     name[:12], size, now - mtime)
            shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
            total -= size
            removed.append(name)
        return removed
