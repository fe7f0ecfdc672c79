"""Emptying chunks in the background: the old files go to a hidden trash at once, a thread deletes them.

`Trash.empty(chunk)` renames every entry of a chunk's root (but its metadata and a load's
claim) into a fresh batch directory of the chunk's hidden trash (`TRASH_NAME`, one per
chunk, on the same file system: each rename is atomic and costs the same for 10 files or
100,000), and returns: the chunk reads as empty from then on (listings, `files`, sums and
its usage skip the trash), and a new load into it sees none of the old files. One thread
per node deletes the batches; it ends when nothing is left. A node killed part way
leaves batches behind: `Trash.sweep` (when the node starts) deletes them the same way.

Nothing here deletes outside a chunk: entries are renamed, never followed (a symbolic
link goes to the trash as a link and is unlinked), a trash that is not a plain directory
(a link planted in the chunk) is unlinked, never entered, and batches are removed through
a file descriptor of the trash opened with O_NOFOLLOW.

Not here: which chunks are emptied and when (`geryon.ingest.load`, `ChunkService.reclaim`).
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import stat
import sys
import threading
from typing import TYPE_CHECKING

from geryon.disks.chunk import CLAIM_NAME, META_NAME, TRASH_NAME

if TYPE_CHECKING:
    from geryon.node.chunkops import ServedChunk

log = logging.getLogger(__name__)

KEPT = frozenset({META_NAME, CLAIM_NAME, TRASH_NAME})
"""Entries of a chunk's root that emptying leaves in place (a claim outlives emptying)."""


def _open_trash(root: str, create: bool) -> int | None:
    """A descriptor of `root`'s trash directory (made if `create`); None if there is none.

    Whatever else stands at its name (a file, a symbolic link planted there) is unlinked,
    never followed."""
    path = os.path.join(root, TRASH_NAME)
    for _ in range(3):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            continue
        if not stat.S_ISDIR(st.st_mode):
            log.warning("%s is not a directory (a %s): removed, not followed", path,
                        "symbolic link" if stat.S_ISLNK(st.st_mode) else "file")
            os.unlink(path)
            continue
        try:
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
    raise OSError(f"{path}: cannot make the chunk's trash directory")


def _remove_entry(trash_fd: int, trash_path: str, name: str) -> None:
    """Remove `name` inside the trash (a directory tree, a file or a link), never following links."""
    try:
        st = os.lstat(name, dir_fd=trash_fd)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=trash_fd)
        return
    if sys.version_info >= (3, 11):
        shutil.rmtree(name, dir_fd=trash_fd)          # fd-relative all the way down
        return
    # 3.10: rmtree by path, but only when the path still leads to the directory we opened.
    if os.path.samestat(os.fstat(trash_fd), os.lstat(trash_path)):
        shutil.rmtree(os.path.join(trash_path, name))


class Trash:
    """The background emptying of a node's chunks (one deleting thread, started on demand)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()              # guards _pending, _thread and each trash's batches
        self._pending: dict[str, str] = {}         # chunk root -> chunk name, trash to delete
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._idle = threading.Condition(self._lock)

    def empty(self, chunk: ServedChunk) -> int:
        """Move everything of `chunk` (but KEPT) into its trash; the number of entries moved."""
        root = chunk.fs.root_path
        with chunk.lock, self._lock:
            fd = _open_trash(root, create=True)
            assert fd is not None
            try:
                batch = f"batch-{secrets.token_hex(8)}"
                os.mkdir(batch, 0o700, dir_fd=fd)
                moved = 0
                for name in os.listdir(root):
                    if name in KEPT:
                        continue
                    os.rename(os.path.join(root, name), os.path.join(root, TRASH_NAME, batch, name))
                    moved += 1
            finally:
                os.close(fd)
            self._schedule(root, chunk.name)
        return moved

    def sweep(self, chunks: list[ServedChunk]) -> list[str]:
        """Delete, in the background, what a previous life of this node left in its chunks' trash."""
        found = []
        for chunk in chunks:
            if os.path.lexists(os.path.join(chunk.fs.root_path, TRASH_NAME)):
                log.info("chunk %s: deleting the files a previous run of this node was deleting", chunk.name)
                with self._lock:
                    self._schedule(chunk.fs.root_path, chunk.name)
                found.append(chunk.name)
        return found

    def pending(self) -> list[str]:
        """Names of the chunks whose trash is still being deleted."""
        with self._lock:
            return sorted(self._pending.values())

    def wait(self, timeout: float | None = None) -> bool:
        """Until every trash is deleted (True) or `timeout` seconds pass (False)."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Stop deleting (what is left is swept when the node starts again)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # -- the deleting thread ------------------------------------------------------------
    def _schedule(self, root: str, name: str) -> None:
        """(self._lock held) Note `root`'s trash as to delete; start the thread if it is not running."""
        if self._stop.is_set():
            return
        self._pending[root] = name
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="geryon-trash", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if not self._pending:
                    break
                root, name = next(iter(self._pending.items()))
                tried = set(self._batches(root) or ())
            try:
                done = self._delete(root)
            except OSError as exc:
                log.warning("chunk %s: could not delete its trash: %s (swept when the node starts)", name, exc)
                done, failed = True, True
            else:
                failed = False
            if done:
                with self._lock:                   # a batch that came meanwhile keeps it pending
                    left = set(self._batches(root) or ())
                    if failed or not left:
                        self._pending.pop(root, None)
                    elif left & tried:             # it survived its deletion: no second round now
                        log.warning("chunk %s: its trash still holds %s after deleting it (swept when the"
                                    " node starts)", name, ", ".join(sorted(left & tried)))
                        self._pending.pop(root, None)
        with self._lock:
            self._thread = None
            self._idle.notify_all()

    def _batches(self, root: str) -> list[str] | None:
        """(self._lock held) The batches in `root`'s trash now; None if it has no trash."""
        try:
            fd = _open_trash(root, create=False)
        except OSError:
            return None
        if fd is None:
            return None
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def _delete(self, root: str) -> bool:
        """Delete the batches of `root`'s trash, then the trash itself; False if stopped part way."""
        with self._lock:                           # batches listed here are complete: `empty` holds the lock
            fd = _open_trash(root, create=False)
            if fd is None:
                return True
            batches = sorted(os.listdir(fd))
        trash_path = os.path.join(root, TRASH_NAME)
        try:
            for batch in batches:
                if self._stop.is_set():
                    return False
                _remove_entry(fd, trash_path, batch)
        finally:
            os.close(fd)
        with self._lock:                           # no batch came meanwhile: the trash goes too
            try:
                os.rmdir(trash_path)
            except OSError:
                pass                               # a new batch (or a link swapped in): next round
        return True
