"""Sending a staged chunk to its node while it is still being packed: `load --cluster`'s transfer.

A `ChunkUpload` is one chunk's master copy being filled: the packer hands it each file
as soon as that file is closed (a small one as its bytes, never staged; a larger one with
the future of its last write), and a thread of its own waits for the bytes to be on the
local disk, then sends them: small files gathered
into batches (`RemoteFS.put_files`, one request and one manifest journal line on the node
per batch; up to 8 MiB, sent from 512 KiB as soon as no more files are ready), larger
ones alone, streamed. Bytes handed over and not yet sent are bounded (`DEFAULT_HELD_BYTES`:
`add` waits). Packing the next files and
writing these on the node overlap. `finish` waits for the last batch and checks that the
node recorded exactly the staged manifest's sizes and SHA-256s.

Not here: packing (`geryon.ingest.packer`), choosing and claiming chunks (`geryon.disks.allocate`),
replicas (`geryon.disks.replicate`), the wire format (`geryon.disks.filebatch`).
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from concurrent.futures import Future
from typing import Any

from geryon.disks.checksum import FileSum
from geryon.errors import GeryonError
from geryon.disks.filebatch import DEFAULT_BATCH_BYTES, DEFAULT_BATCH_FILE, MAX_BATCH_FILES

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BATCH_MIN", "DEFAULT_HELD_BYTES", "DEFAULT_STOP_WAIT", "ChunkUpload", "Held", "UploadFailed"]

DEFAULT_BATCH_MIN = 512 << 10
"""Bytes a batch holds at least before it is sent early (no more files ready yet)."""

DEFAULT_HELD_BYTES = 4 * DEFAULT_BATCH_BYTES
"""Bytes of files handed to an upload as bytes and not sent yet, at most (`add` waits)."""

DEFAULT_STOP_WAIT = 30.0
"""Seconds `abort` waits for the upload thread to stop (it is a daemon thread after that)."""


class UploadFailed(GeryonError):
    """A chunk's upload failed, or the node recorded other bytes than were sent."""


class Held:
    """Bytes handed to uploads as bytes and not sent yet, bounded; shared by a load's uploads."""

    def __init__(self, limit: int = DEFAULT_HELD_BYTES) -> None:
        self.limit = limit
        self.bytes = 0
        self.waiting = 0                      # threads in `take`, waiting for room
        self.cond = threading.Condition()

    def take(self, n: int, stop: Any) -> None:
        """Count `n` bytes, once fewer than `limit` are held or `stop()` is true."""
        with self.cond:
            self.waiting += 1
            try:
                self.cond.wait_for(lambda: self.bytes < self.limit or stop())
            finally:
                self.waiting -= 1
            self.bytes += n

    def give(self, n: int) -> None:
        with self.cond:
            self.bytes -= n
            self.cond.notify_all()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    @property
    def full(self) -> bool:
        return self.bytes >= self.limit


class ChunkUpload:
    """One chunk's files going to one remote chunk (a `RemoteFS`), in order, from a thread.

    Args:
        remote: the remote chunk, emptied of records first (`putsums {}`); it is closed by
            `finish` and `abort`.
        label: names the chunk and where it goes, in errors.
        batch_bytes, batch_min: a batch is sent once it holds `batch_bytes`, or `batch_min`
            when no more files are ready yet.
        batch_file: files over this size go alone.
        held: the bound on bytes of files given as bytes and not sent yet (shared by a
            load's uploads; default: one of DEFAULT_HELD_BYTES of its own).
    """

    def __init__(self, remote: Any, label: str, batch_bytes: int = DEFAULT_BATCH_BYTES,
                 batch_min: int = DEFAULT_BATCH_MIN, batch_file: int = DEFAULT_BATCH_FILE,
                 held: Held | None = None) -> None:
        self.remote, self.label = remote, label
        self.batch_bytes, self.batch_min, self.batch_file = batch_bytes, batch_min, batch_file
        self.held = held if held is not None else Held()
        self.error: BaseException | None = None
        self.sent = 0
        self._queue: queue.SimpleQueue[tuple[str, str, Future[None] | None, bytes | None] | None] = \
            queue.SimpleQueue()
        self._stopping = False
        self._ended = False
        self._lock = threading.Lock()        # an error set and the queue given back, or a file added
        remote.call("putsums", files={})      # an empty manifest first: each write is recorded
        self._thread = threading.Thread(target=self._run, name="geryon-upload", daemon=True)
        self._thread.start()

    def add(self, key: str, local: str, written: Future[None] | None, data: bytes | None = None) -> None:
        """Send `data` as `key`, or when it is None the staged file `local` once `written`
        (its last write) is done. Waits while `held` is full.

        Raises:
            UploadFailed: an earlier file of this chunk could not be sent (stop packing).
        """
        if data is not None:
            self.held.take(len(data), lambda: self.error is not None or self._stopping)
        with self._lock:
            if self.error is None:
                self._queue.put((key, local, written, data))
                return
        if data is not None:
            self.held.give(len(data))
        raise UploadFailed(f"{self.label}: upload failed: {self.error}") from self.error

    def end(self) -> None:
        """No more files: what is gathered is sent now (`finish` waits for it); idempotent."""
        if not self._ended:
            self._ended = True
            self._queue.put(None)

    def _sent(self, batch: list[tuple[str, bytes]]) -> None:
        self.sent += self.remote.put_files(batch)
        self.held.give(sum(len(b) for _, b in batch))

    def _run(self) -> None:
        batch: list[tuple[str, bytes]] = []
        size = 0
        made: set[str] = set()
        try:
            while (item := self._queue.get()) is not None:
                if self._stopping:
                    return
                key, local, written, data = item
                if written is not None:
                    written.result()
                if data is None and os.path.getsize(local) > self.batch_file:
                    parent = os.path.dirname(key)
                    if parent not in ("/", "") and parent not in made:
                        self.remote.makedirs(parent, recreate=True)
                        made.add(parent)
                    with open(local, "rb") as f:
                        self.remote.put_file(key, f)
                    self.sent += 1
                    continue
                if data is None:
                    with open(local, "rb") as f:
                        data = f.read()
                    self.held.take(len(data), lambda: True)
                batch.append((key, data))
                size += len(data)
                # Full, or nothing more is ready and the batch is worth a request: send it,
                # so that the node is busy while the packer works and little is left at the end.
                # Also when `add` may be waiting for room.
                if size >= self.batch_bytes or len(batch) >= MAX_BATCH_FILES or self.held.full \
                        or (size >= self.batch_min and self._queue.empty()):
                    self._sent(batch)
                    batch, size = [], 0
            if batch and not self._stopping:
                self._sent(batch)
                batch = []
        except BaseException as exc:  # noqa: BLE001 - handed to the packing thread
            with self._lock:
                self.error = exc
        finally:
            self._forget(batch)

    def _forget(self, batch: list[tuple[str, bytes]]) -> None:
        """Give back what was held and will not be sent: `batch`, and what is still queued."""
        unsent = sum(len(b) for _, b in batch)
        with self._lock:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None and item[3] is not None:
                    unsent += len(item[3])
        self.held.give(unsent)

    def finish(self, staged: dict[str, FileSum]) -> None:
        """Wait until every file is sent, then check the node recorded what `staged` says.

        Raises:
            UploadFailed: a send failed, or the node's manifest differs from `staged`.
        """
        self.end()
        self._thread.join()
        try:
            if self.error is not None:
                raise UploadFailed(f"{self.label}: upload failed: {self.error}") from self.error
            recorded = self.remote.manifest() or {}
        finally:
            self.remote.close()
        bad = [k for k in staged if k not in recorded or (recorded[k].size, recorded[k].sha256) !=
               (staged[k].size, staged[k].sha256)]
        extra = sorted(set(recorded) - set(staged))
        if bad or extra:
            raise UploadFailed(f"{self.label}: upload check failed: {len(bad) + len(extra)} file(s) differ "
                               f"from what was sent (first: {(sorted(bad) or extra)[0]})")

    def abort(self, wait: float = DEFAULT_STOP_WAIT) -> None:
        """Stop sending (the load failed); idempotent."""
        self._stopping = True
        self.held.wake()
        self.end()
        self._thread.join(wait)
        try:
            self.remote.close()
        except Exception as exc:  # noqa: BLE001 - already failing: the first error is the one reported
            log.debug("%s: closing after a failed upload: %s", self.label, exc)
