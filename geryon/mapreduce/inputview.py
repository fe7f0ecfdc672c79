"""A streaming map task's view of its input: a directory holding exactly its split's files.

The planner cuts a disk into several map tasks. A command that walks its disk itself
(`find $GERYON_DISK -type f`, the seed's `idx $n/d0.mbox/*`) must see only its own task's
part of it, or it counts the disk once per task. `build_view` makes, under a directory of
the task's own:

    VIEW/n/<disk>/<path>...   the split's files at their paths on the disk ($GERYON_DISK, $n/<disk>)
    VIEW/n/scratch.cpu        an empty writable directory ($n/$cpudisk), gone after the task
    VIEW/files                the view's files, one absolute path a line ($GERYON_FILES_LIST)

A whole file of a local disk is a hard link to it (a copy where no link can be made,
e.g. across file systems); a range the planner cut from a large file (`--reader lines`)
is a file holding only that range's lines, never the whole file; a file of another node's
disk is copied, read through its checksum manifest. Links are not read here: the task's
stdin feed reads every byte of the split through the manifest, to the end even when the
command stops reading, so damage is still found (`StreamingProcess(drain=True)`). The
view is for reading: a linked file is the disk's own file. `remove_view` removes it all.
Not here: running the command (`geryon.mapreduce.maptask`, `geryon.mapreduce.streaming`).
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass

from fs.base import FS

from geryon.records.badrecords import InputError
from geryon.records.compression import codec_of
from geryon.records.readers import copy_range, split_manifest
from geryon.records.split import Split

log = logging.getLogger(__name__)

VIEW_SUFFIX = ".view"
"""Ending of a view's directory name (`m3.a0.view`)."""

SCRATCH_DISK = "scratch.cpu"
"""Name of the writable scratch directory under `$n` (the value of `$cpudisk`)."""

FILES_LIST = "files"
"""Name of the file listing the view's files, in the view's directory."""


@dataclass(frozen=True)
class InputView:
    """A built view: where it is, and how many of its files are links or copies."""

    root: str
    disk_dir: str
    scratch: str
    files_list: str
    files: tuple[str, ...]
    linked: int = 0
    copied: int = 0

    @property
    def ns(self) -> str:
        """The `$n` directory: one entry per disk, as rcpu gives its commands."""
        return os.path.dirname(self.disk_dir)

    def env(self) -> dict[str, str]:
        """The variables a map command sees."""
        return {"GERYON_DISK": self.disk_dir, "n": self.ns, "cpudisk": os.path.basename(self.scratch),
                "GERYON_FILES_LIST": self.files_list}


def entry_name(disk: str) -> str:
    """The name of a disk's directory under `$n`: the disk's name, made a single path component."""
    name = disk.replace(os.sep, "_").replace("\0", "_")
    return "disk" if name in ("", ".", "..") else name


def _relative(path: str) -> str:
    rel = os.path.normpath(path.lstrip("/"))
    if rel in ("", ".") or rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        raise InputError(f"bad input path {path!r}")
    return rel


def _link(src: str, dest: str, size: int) -> bool:
    """Hard-link a whole file into the view; False when it cannot (or is not whole)."""
    try:
        if os.stat(src).st_size != size:      # cut by the planner, or changed since: copy the range
            return False
        os.link(src, dest)
        return True
    except OSError as exc:                      # another file system, a link limit, permissions
        log.debug("cannot link %s into the view (%s): copying", src, exc)
        return False


def build_view(disk_fs: FS, split: Split, parent: str, tag: str, root: str | None = None) -> InputView:
    """Make the view of `split` in `parent/<tag>.view` (replacing one left there).

    Args:
        disk_fs: the split's disk.
        split: the task's input.
        parent: a directory of the task's (its work directory).
        tag: the attempt's name, e.g. `m3.a0`.
        root: the disk's local directory, when it is local (files are linked from there).
    Raises:
        InputError: a file cannot be read (ChecksumMismatch: a copied file is damaged).
        OSError: the view cannot be written.
    """
    view_root = os.path.join(parent, f"{tag}{VIEW_SUFFIX}")
    if os.path.lexists(view_root):
        shutil.rmtree(view_root)
    ns = os.path.join(view_root, "n")
    name = entry_name(split.disk)
    disk_dir = os.path.join(ns, name)
    scratch = os.path.join(ns, SCRATCH_DISK if name != SCRATCH_DISK else f"{SCRATCH_DISK}.0")
    os.makedirs(disk_dir)
    os.makedirs(scratch)
    files: list[str] = []
    written: set[str] = set()
    linked = copied = 0
    manifest_read = False
    manifest = None
    for rng in split.ranges:
        if rng.start > 0 and codec_of(rng.path) is not None:
            continue  # a compressed file is read whole, by its first range (as raw_chunks does)
        rel = _relative(rng.path)
        dest = os.path.join(disk_dir, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if dest not in written and root is not None and rng.start == 0 \
                and _link(os.path.join(root, rel), dest, rng.end):
            linked += 1
        else:
            if not manifest_read:
                manifest, manifest_read = split_manifest(disk_fs, split, root), True
            with open(dest, "ab" if dest in written else "xb") as out:
                copy_range(disk_fs, split, rng, out, root, manifest)
            copied += 1
        if dest not in written:
            written.add(dest)
            files.append(dest)
    files_list = os.path.join(view_root, FILES_LIST)
    with open(files_list, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write("".join(p + "\n" for p in files))
    log.debug("view of %s: %d linked, %d copied", split.describe(), linked, copied)
    return InputView(view_root, disk_dir, scratch, files_list, tuple(files), linked, copied)


def remove_view(view: InputView) -> None:
    """Remove a view (links only: the disk's files stay); never raises."""
    for dirpath, dirs, _files in os.walk(view.root):
        for d in dirs:                              # a command may have made its scratch read-only
            path = os.path.join(dirpath, d)
            if not os.path.islink(path):            # never chmod what a link points at
                try:
                    os.chmod(path, 0o700)
                except OSError:
                    pass
    shutil.rmtree(view.root, ignore_errors=True)
