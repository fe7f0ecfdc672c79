"""Many small files in one request body: the wire format of `PUT /v1/chunks/{chunk}/files`.

A batch is one JSON line, `{"files": [[path, size], ...]}`, then the files' bytes
back to back in the same order. `encode_batch` builds one (a load's upload), `parse_batch`
reads one and checks its shape (its index through `registry.jsondoc`: bounded depth);
what the paths may name is the node's to decide (`geryon.node.batchwrite`). Pure functions
over bytes. Not here: sending it (`geryon.disks.remote.RemoteFS.put_files`), writing it.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from registry import jsondoc

from geryon.errors import GeryonError

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BATCH_BODY", "DEFAULT_BATCH_BYTES", "DEFAULT_BATCH_FILE", "MAX_BATCH_FILES", "BatchError",
           "encode_batch", "parse_batch"]

DEFAULT_BATCH_BYTES = 8 << 20
"""File bytes a client gathers into one batch before sending it."""

DEFAULT_BATCH_FILE = 1 << 20
"""Files larger than this are sent alone (streamed), never in a batch."""

MAX_BATCH_FILES = 20_000
"""The most files one batch may carry."""

DEFAULT_BATCH_BODY = DEFAULT_BATCH_BYTES + DEFAULT_BATCH_FILE + (4 << 20)
"""Largest batch body a node reads (the files, one more file, and the index line)."""


class BatchError(GeryonError, ValueError):
    """A batch body that is not one: the message says what is wrong, in one line."""


def encode_batch(files: Sequence[tuple[str, bytes]]) -> bytes:
    """The body carrying `files` ((path, bytes) pairs), in order."""
    index = json.dumps({"files": [[p, len(b)] for p, b in files]}, separators=(",", ":")).encode()
    return b"".join([index, b"\n", *(bytes(b) for _, b in files)])


def parse_batch(body: bytes) -> list[tuple[str, memoryview]]:
    """The (path, bytes) pairs of a batch body, views into `body`.

    Raises:
        BatchError: no index line, an index that is not a list of [path, size] (paths
            strings, sizes non-negative integers, at most MAX_BATCH_FILES), a path named
            twice, or bytes that do not add up to the sizes.
    """
    head, nl, _ = body.partition(b"\n")
    if not nl:
        raise BatchError("bad file batch: no index line")
    try:
        index = jsondoc.loads(head, what="bad file batch: index line", max_bytes=len(body))
    except jsondoc.BadJSON as exc:
        raise BatchError(str(exc)) from exc
    files = index.get("files") if isinstance(index, dict) else None
    if not isinstance(files, list):
        raise BatchError('bad file batch: index is not {"files": [[path, size], ...]}')
    if len(files) > MAX_BATCH_FILES:
        raise BatchError(f"bad file batch: {len(files)} files, at most {MAX_BATCH_FILES}")
    view = memoryview(body)
    at = len(head) + 1
    out: list[tuple[str, memoryview]] = []
    seen: set[str] = set()
    for item in files:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and type(item[1]) is int and item[1] >= 0):
            raise BatchError(f"bad file batch: index entry {str(item)[:80]} is not [path, size]")
        path, size = item
        if path in seen:
            raise BatchError(f"bad file batch: {path[:200]} named twice")
        seen.add(path)
        if at + size > len(view):
            raise BatchError(f"bad file batch: {len(view) - len(head) - 1} bytes of data, "
                             f"shorter than its index says")
        out.append((path, view[at:at + size]))
        at += size
    if at != len(view):
        raise BatchError(f"bad file batch: {len(view) - at} bytes more than its index says")
    return out
