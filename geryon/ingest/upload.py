"""Sending a staged chunk to its node while it is still being packed: `load --cluster`'s transfer.

A `ChunkUpload` is one chunk's master copy being filled: the packer hands it each file
as soon as that file is closed (with the future of its last write), and a thread of its
own waits for the bytes to be on the local disk, then sends them: small files gathered
into batches (`RemoteFS.put_files`, one request and one manifest journal line on the node
per batch; up to 8 MiB, sent from 512 KiB as soon as no more files are ready), larger
ones alone, streamed. Packing the next files and
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

__all__ = ["DEFAULT_BATCH_MIN", "DEFAULT_STOP_WAIT", "ChunkUpload", "UploadFailed"]

DEFAULT_BATCH_MIN = 512 << 10
"""Bytes a batch holds at least before it is sent early (no more files ready yet)."""

DEFAULT_STOP_WAIT = 30.0
"""Seconds `abort` waits for the upload thread to stop (it is a daemon thread after that)."""


class UploadFailed(GeryonError):
    """A chunk's upload failed, or the node recorded other bytes than were sent."""


class ChunkUpload:
    """One chunk's files going to one remote chunk (a `RemoteFS`), in order, from a thread.

    Args:
        remote: the remote chunk, emptied of records first (`putsums {}`); it is closed by
            `finish` and `abort`.
        label: names the chunk and where it goes, in errors.
        batch_bytes, batch_min: a batch is sent once it holds `batch_bytes`, or `batch_min`
            when no more files are ready yet.
        batch_file: files over this size go alone.
    """

    def __init__(self, remote: Any, label: str, batch_bytes: int = DEFAULT_BATCH_BYTES,
                 batch_min: int = DEFAULT_BATCH_MIN, batch_file: int = DEFAULT_BATCH_FILE) -> None:
        self.remote, self.label = remote, label
        self.batch_bytes, self.batch_min, self.batch_file = batch_bytes, batch_min, batch_file
        self.error: BaseException | None = None
        self.sent = 0
        self._queue: queue.SimpleQueue[tuple[str, str, Future[None] | None] | None] = queue.SimpleQueue()
        self._stopping = False
        remote.call("putsums", files={})      # an empty manifest first: each write is recorded
        self._thread = threading.Thread(target=self._run, name="geryon-upload", daemon=True)
        self._thread.start()

    def add(self, key: str, local: str, written: Future[None] | None) -> None:
        """Send the staged file `local` as `key` once `written` (its last write) is done.

        Raises:
            UploadFailed: an earlier file of this chunk could not be sent (stop packing).
        """
        if self.error is not None:
            raise UploadFailed(f"{self.label}: upload failed: {self.error}") from self.error
        self._queue.put((key, local, written))

    def _run(self) -> None:
        batch: list[tuple[str, bytes]] = []
        size = 0
        made: set[str] = set()
        try:
            while (item := self._queue.get()) is not None:
                if self._stopping:
                    return
                key, local, written = item
                if written is not None:
                    written.result()
                if os.path.getsize(local) > self.batch_file:
                    parent = os.path.dirname(key)
                    if parent not in ("/", "") and parent not in made:
                        self.remote.makedirs(parent, recreate=True)
                        made.add(parent)
                    with open(local, "rb") as f:
                        self.remote.put_file(key, f)
                    self.sent += 1
                    continue
                with open(local, "rb") as f:
                    data = f.read()
                batch.append((key, data))
                size += len(data)
                # Full, or nothing more is ready and the batch is worth a request: send it,
                # so that the node is busy while the packer works and little is left at the end.
                if size >= self.batch_bytes or len(batch) >= MAX_BATCH_FILES or \
                        (size >= self.batch_min and self._queue.empty()):
                    self.sent += self.remote.put_files(batch)
                    batch, size = [], 0
            if batch and not self._stopping:
                self.sent += self.remote.put_files(batch)
        except BaseException as exc:  # noqa: BLE001 - handed to the packing thread
            self.error = exc

    def finish(self, staged: dict[str, FileSum]) -> None:
        """Wait until every file is sent, then check the node recorded what `staged` says.

        Raises:
            UploadFailed: a send failed, or the node's manifest differs from `staged`.
        """
        self._queue.put(None)
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
        self._queue.put(None)
        self._thread.join(wait)
        try:
            self.remote.close()
        except Exception as exc:  # noqa: BLE001 - already failing: the first error is the one reported
            log.debug("%s: closing after a failed upload: %s", self.label, exc)
