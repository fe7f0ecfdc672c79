"""Disk entries in a local ndb file: replace an app's disks, keeping everything else.

`geryon load` names the chunks it makes in the ndb file (disk.py reads them back):

    name=d0.mbox kfs
        master=local!d0.mbox
        path=../disks/d0.mbox
        replica=d0.mbox.r1

and one such entry per replica (`name=d0.mbox.r1`, `replicaof=d0.mbox`). Entries of the
same app from an earlier load are dropped; other entries, comments and blank lines are
kept as written. The file is rewritten atomically (temporary name, then rename).
Not here: cluster-wide disk naming through the registry.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import ndb
from geryon.errors import GeryonError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiskEntry:
    """One disk to name: its name, the local chunk directory, its replicas' names."""

    name: str
    path: str
    host: str = "local"
    replicas: tuple[str, ...] = ()
    replica_of: str | None = None


def app_disk_pattern(app: str) -> re.Pattern[str]:
    """Names of an app's disks and replicas: `dN.APP`, `dN.APP.rK`."""
    return re.compile(rf"^d\d+\.{re.escape(app)}(\.r\d+)?$")


def entry_for(disk: DiskEntry, base: str) -> ndb.Entry:
    """The ndb entry of a disk; `path=` is relative to `base` (the ndb file's directory)."""
    rel = os.path.relpath(os.path.abspath(disk.path), os.path.abspath(base))
    lines: list[list[ndb.Tuple]] = [
        [ndb.Tuple("name", disk.name), ndb.Tuple("kfs")],
        [ndb.Tuple("master", f"{disk.host}!{disk.name}")],
        [ndb.Tuple("path", rel)],
    ]
    if disk.replicas:
        lines.append([ndb.Tuple("replica", r) for r in disk.replicas])
    if disk.replica_of:
        lines.append([ndb.Tuple("replicaof", disk.replica_of)])
    return ndb.Entry(tuple(tuple(line) for line in lines))


def _blocks(text: str) -> list[str]:
    """The file cut into entries (a first line and its indented lines) and other lines."""
    blocks: list[str] = []
    for line in text.splitlines(keepends=True):
        if line[:1] in (" ", "\t") and blocks and not blocks[-1].lstrip().startswith("#") and blocks[-1].strip():
            blocks[-1] += line
        else:
            blocks.append(line)
    return blocks


def replace_disks(db_file: str, drop: re.Pattern[str], disks: Sequence[DiskEntry]) -> None:
    """Drop the entries whose name matches `drop`, append `disks`, and write atomically.

    Raises:
        GeryonError: the file exists but is not valid ndb.
    """
    try:
        with open(db_file, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    try:
        ndb.parse(text, db_file)  # refuse to rewrite a file we cannot read
        kept = []
        for block in _blocks(text):
            entries = ndb.parse(block, db_file) if block.strip() and not block.lstrip().startswith("#") else []
            if entries and any(drop.match(e.get("name") or "") for e in entries):
                continue
            kept.append(block)
    except ndb.NdbError as exc:
        raise GeryonError(f"cannot update {db_file}: {exc}") from exc
    out = "".join(kept)
    if out and not out.endswith("\n"):
        out += "\n"
    base = os.path.dirname(os.path.abspath(db_file))
    out += ndb.format_database(entry_for(d, base) for d in disks)
    os.makedirs(base, exist_ok=True)
    tmp = os.path.join(base, f".{os.path.basename(db_file)}.tmp-{secrets.token_hex(4)}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(out)
    os.replace(tmp, db_file)
