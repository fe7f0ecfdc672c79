"""The registry's ndb file as a running server keeps it: its named disks held as entries.

`NamedDisks` follows the ndb file (re-read every `poll` seconds, and at once when a chunk
service registers, goes or changes: `dirty`), keeps one store entry per named disk
(owner `#ndb`, as `registry.disks.plan` says), and reads and edits the file for the
`/v1/ndb` routes, one edit at a time; the disks an edit names are served before it is
answered.

Not here: the HTTP routes and their bodies (`registry.server`), parsing the file and the
entries' attributes (`registry.disks`), the rules of the store (`registry.store`).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.disks import DISK_OWNER, DiskNames, edit_file, plan, read_text, text_digest
from registry.errors import RegistryError, ServiceNotFound
from registry.store import Store

log = logging.getLogger(__name__)


class NamedDisks:
    """The named disks of the ndb file at `path` (None: the registry keeps no ndb file).

    Args:
        path: the ndb file.
        store: the registry's store, where the disks' entries live.
        changed: called after the store changed (the server publishes and saves).
    """

    def __init__(self, path: Path | None, store: Store, changed: Callable[[], None]) -> None:
        self.path = path
        self._store = store
        self._changed = changed
        self._names = DiskNames(path) if path else None
        self.dirty = asyncio.Event()               # a chunk service changed: reconcile now
        self._lock = asyncio.Lock()                # one edit of the ndb file at a time
        self._warned: set[str] = set()

    @property
    def kept(self) -> bool:
        """Whether this registry keeps an ndb file."""
        return self._names is not None

    async def follow(self, poll: float) -> None:
        """Keep the store's disk entries as the file says, forever (a task of the server)."""
        assert self._names is not None
        current: list[Any] = []
        while True:
            # In a thread: a big or hostile ndb file must not stop the loop answering
            # (and every client declaring the registry silent); DiskNames keeps the last
            # good reading when a new one fails, and logs why.
            disks = await asyncio.to_thread(self._names.read)
            if disks != current or self.dirty.is_set():
                self.dirty.clear()
                current = disks
                self.reconcile(disks)
            try:
                await asyncio.wait_for(self.dirty.wait(), poll)
            except asyncio.TimeoutError:
                pass

    def reconcile(self, disks: list[Any]) -> None:
        """Make the store's `#ndb` entries those `plan` computes for `disks`."""
        store = self._store
        want = plan(disks, store.index())
        for service in store.index():
            if store.owner_of(service.name) == DISK_OWNER and service.name not in want:
                store.unregister(service.name, owner=DISK_OWNER)
        for name, attrs in want.items():
            have = store.get(name)
            try:
                if have is None:
                    store.register(name, attrs, owner=DISK_OWNER)
                elif have.attrs != attrs:
                    store.replace(name, attrs, owner=DISK_OWNER)   # `addr` may go
            except RegistryError as exc:
                key = f"{name}: {exc}"
                if key not in self._warned:
                    self._warned.add(key)
                    log.warning("named disk %s", key)
        self._changed()

    def ndb_file(self) -> Path:
        """The ndb file.

        Raises:
            ServiceNotFound: this registry keeps none.
        """
        if self.path is None:
            raise ServiceNotFound("this registry keeps no ndb file (start it with `geryon registry serve --ndb FILE`)")
        return self.path

    async def read(self) -> dict[str, str]:
        """The file as `GET /v1/ndb` answers it: its path, text and version."""
        path = self.ndb_file()
        text = await asyncio.to_thread(read_text, path)
        return {"path": str(path), "text": text, "version": text_digest(text)}

    async def edit(self, drop: list[str], add: str, base: str | None, text: str | None) -> str:
        """Drop entries by name and append `add` (or write `text` whole), if the file is still
        at version `base`; its new version, once the store holds the disks it names."""
        path = self.ndb_file()
        async with self._lock:
            version: str = await asyncio.to_thread(edit_file, path, drop, add, base, text)
            if self._names is not None:            # the new names are served before we answer
                self.reconcile(await asyncio.to_thread(self._names.read))
        return version
