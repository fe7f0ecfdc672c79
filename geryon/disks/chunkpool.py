"""A node's chunk pool: a directory chunks are made in on request, up to a size.

`geryon node --chunk-pool DIR --pool-size 4G`: the chunk service makes each chunk as
`DIR/chunkN` (or a name asked for), serves and registers it at once, and still serves it
after a restart. Which of the pool's chunks are replicas (read-only) is kept in the pool's
own file, `POOL_STATE`.

Not here: the cluster's side, choosing a node and claiming its chunks (`geryon.disks.allocate`);
serving the chunks (`geryon.node.chunkservice`).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterable

from geryon.disks.chunk import META_NAME, create_chunk, read_capacity
from geryon.errors import DiskFull, GeryonError

log = logging.getLogger(__name__)

POOL_STATE = ".geryon-pool"
"""The pool's own file (JSON): which of its chunks are replicas (read-only)."""

_CHUNK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}$")


class ChunkPool:
    """A directory chunks are made in on request, holding at most `size` bytes of capacity.

    Args:
        root: the pool directory (made if missing).
        size: total capacity it may hand out (None: whatever the filesystem has free).
    """

    def __init__(self, root: str, size: int | None = None) -> None:
        if size is not None and size <= 0:
            raise GeryonError(f"chunk pool {root}: size must be positive")
        self.root = os.path.abspath(root)
        self.size = size
        self._lock = threading.Lock()
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise GeryonError(f"chunk pool {root}: {exc.strerror or exc}") from exc

    def _chunk_dirs(self) -> list[str]:
        return sorted(n for n in os.listdir(self.root)
                      if os.path.isfile(os.path.join(self.root, n, META_NAME)))

    def _roles(self) -> dict[str, bool]:
        try:
            with open(os.path.join(self.root, POOL_STATE)) as f:
                data = json.load(f)
            return {str(k): bool(v) for k, v in dict(data.get("replica", {})).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("chunk pool %s: unreadable %s (%s): serving every chunk writable", self.root, POOL_STATE, exc)
            return {}

    def _save_roles(self, roles: dict[str, bool]) -> None:
        path = os.path.join(self.root, POOL_STATE)
        tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
        with open(tmp, "w") as f:
            json.dump({"replica": {k: v for k, v in sorted(roles.items()) if v}}, f)
        os.replace(tmp, path)

    def scan(self) -> list[tuple[str, str, bool]]:
        """The chunks the pool holds: (name, path, replica)."""
        roles = self._roles()
        return [(n, os.path.join(self.root, n), roles.get(n, False)) for n in self._chunk_dirs()]

    def allocated(self) -> int:
        """Capacity handed out so far, in bytes."""
        total = 0
        for name in self._chunk_dirs():
            try:
                total += read_capacity(os.path.join(self.root, name)) or 0
            except GeryonError:
                continue
        return total

    def room(self) -> int:
        """Bytes of capacity the pool can still hand out."""
        left = sys.maxsize if self.size is None else self.size - self.allocated()
        return max(0, min(left, shutil.disk_usage(self.root).free))

    def create(self, capacity: int, name: str | None = None, replica: bool = False,
               taken: Iterable[str] = ()) -> tuple[str, str]:
        """Make a chunk of `capacity` bytes; returns (name, path).

        Raises:
            DiskFull: the pool has no room for it.
            GeryonError: a bad or taken name, or a bad capacity.
        """
        if capacity <= 0:
            raise GeryonError(f"bad capacity {capacity}: must be positive")
        taken = set(taken)
        with self._lock:
            room = self.room()
            if capacity > room:
                raise DiskFull(f"chunk pool {self.root}: no room for a {capacity}-byte chunk ({room} bytes left)")
            if name is None:
                n = 0
                while f"chunk{n}" in taken or os.path.exists(os.path.join(self.root, f"chunk{n}")):
                    n += 1
                name = f"chunk{n}"
            elif not _CHUNK_NAME.match(name) or name in taken or os.path.exists(os.path.join(self.root, name)):
                raise GeryonError(f"chunk name {name!r} is taken or not allowed")
            path = os.path.join(self.root, name)
            create_chunk(path, capacity)
            if replica:
                self._save_roles({**self._roles(), name: True})
        return name, path

    def delete(self, name: str) -> None:
        """Remove a chunk of the pool and everything in it."""
        with self._lock:
            shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
            roles = self._roles()
            if roles.pop(name, None) is not None:
                self._save_roles(roles)

    def set_role(self, name: str, replica: bool) -> None:
        """Remember whether a chunk is a (read-only) replica across restarts."""
        with self._lock:
            self._save_roles({**self._roles(), name: replica})
