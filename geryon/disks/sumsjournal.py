"""The journal of a chunk's checksum manifest: changes appended as JSON lines, replayed on read.

Rewriting a chunk's whole manifest for every file written costs N² for N files; appending
one line per change costs N. The journal `.geryon-sums.log` sits beside the manifest: its
first line names the manifest it continues (`{"manifest": GEN}`, the token the manifest
was written with), every later line is one change (`{"add": {key: sums}, "drop": [key]}`).
A journal naming another manifest is stale (a crash between writing a manifest and
removing the old journal) and is ignored. A line cut short (a crash mid-append) is not
applied; a line that does not parse is ignored with a warning, and so is everything after
it (the journal is `damaged`). Nothing is ever appended after bytes the writer could not
read: it writes the manifest whole instead. Both files are opened without following symbolic links.

Not here: the manifest itself, `FileSum` values, when to write the manifest whole
(`geryon.disks.checksum`).
"""
from __future__ import annotations

import errno
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from geryon.disks.chunk import SUMS_JOURNAL
from geryon.errors import GeryonError

log = logging.getLogger(__name__)

__all__ = ["JournalRefused", "JournalState", "append_change", "read_changes", "journal_path"]


class JournalRefused(GeryonError):
    """The journal is not a regular file of the chunk (a symbolic link): it is never read."""


@dataclass
class JournalState:
    """How much of a chunk's journal a reader has applied (a cursor, advanced in place)."""

    ino: int = 0            # 0: no journal seen yet
    offset: int = 0         # bytes applied (whole lines)
    size: int = 0           # the journal's size when last looked at
    damaged: bool = False   # an unreadable or cut line: never append after it
    stale: bool = False     # the journal continues another manifest


def journal_path(root: str) -> str:
    return os.path.join(root, SUMS_JOURNAL)


def _open(path: str, flags: int) -> int | None:
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise JournalRefused(f"{path} is a symbolic link: refused") from exc
        raise


def read_changes(root: str, gen: str | None, state: JournalState) -> list[dict[str, Any]] | None:
    """The changes appended to the journal of the manifest `gen` since `state`, which advances.

    Returns None when the journal is not the one `state` was reading (replaced, or cut
    shorter): the caller starts again from the manifest with a fresh state.

    Raises:
        JournalRefused: the journal is a symbolic link.
        OSError: it cannot be read.
    """
    fd = _open(journal_path(root), os.O_RDONLY)
    if fd is None:
        if state.ino:
            return None                     # written whole since: start again
        state.size = 0
        return []
    try:
        st = os.fstat(fd)
        if state.ino and (st.st_ino != state.ino or st.st_size < state.offset):
            return None
        state.ino, state.size = st.st_ino, st.st_size
        if state.stale or state.damaged or st.st_size == state.offset:
            return []
        os.lseek(fd, state.offset, os.SEEK_SET)
        parts = []
        while block := os.read(fd, 1 << 20):
            parts.append(block)
        data = b"".join(parts)
    finally:
        os.close(fd)
    return _parse(root, gen, data, state)


def _parse(root: str, gen: str | None, data: bytes, state: JournalState) -> list[dict[str, Any]]:
    end = data.rfind(b"\n") + 1            # a cut line is not applied (its writer died, or is writing)
    changes: list[dict[str, Any]] = []
    at = 0
    for line in data[:end].split(b"\n")[:-1]:
        try:
            doc = json.loads(line)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            if state.offset == 0 and at == 0:
                if doc.get("manifest") != gen or gen is None:
                    state.stale = True          # continues another manifest: none of it applies
                    log.debug("%s: journal of another manifest, ignored", root)
                    return []
            else:
                add, drop = doc.get("add", {}), doc.get("drop", [])
                if not isinstance(add, dict) or not isinstance(drop, list):
                    raise ValueError("bad change")
                changes.append(doc)
        except ValueError as exc:
            log.warning("%s: checksum journal %s: unreadable line at byte %d ignored, and what follows (%s)",
                        root, SUMS_JOURNAL, state.offset + at, exc)
            state.damaged = True
            break
        at += len(line) + 1
    state.offset += at
    return changes


def append_change(root: str, gen: str, change: dict[str, Any], state: JournalState) -> bool:
    """Append one change to the journal of manifest `gen`, as one write; True when done.

    False (nothing written) when appending would not be safe: the journal is damaged or
    stale, or holds bytes `state` has not read. The caller then writes the manifest whole.
    One writer at a time per chunk (the caller's lock).
    """
    if state.damaged or state.stale:
        return False
    line = json.dumps(change, separators=(",", ":")).encode() + b"\n"
    path = journal_path(root)
    if not state.ino:
        head = json.dumps({"manifest": gen}).encode() + b"\n"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, head + line)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        state.ino, state.offset, state.size = st.st_ino, len(head) + len(line), st.st_size
        return st.st_size == state.offset
    fd = _open(path, os.O_WRONLY | os.O_APPEND)
    if fd is None:
        return False
    try:
        st = os.fstat(fd)
        if st.st_ino != state.ino or st.st_size != state.offset:
            return False
        written = os.write(fd, line)
    finally:
        os.close(fd)
    state.offset += written
    state.size = state.offset
    if written != len(line):                 # a short write (disk full): never append after it
        state.damaged = True
    return written == len(line)
