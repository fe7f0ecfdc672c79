"""Input splits: how a job's input disks are cut into map tasks. Pure planning, no reads.

Small files are packed together up to the split size (Hadoop's CombineFileInputFormat),
so a disk of many mail messages is not one task per message. With the lines reader a file
larger than the split size is cut into byte ranges; a line belongs to the range that holds
its first byte (see `readers.read_lines`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from fs.base import FS

from geryon.disks.chunk import data_entry, is_internal
from geryon.disks.outputs import SUCCESS_NAME


@dataclass(frozen=True)
class FileRange:
    """Bytes [start, end) of one file of a disk."""

    path: str
    start: int
    end: int

    def to_json(self) -> list:
        return [self.path, self.start, self.end]

    @classmethod
    def from_json(cls, data: list) -> "FileRange":
        return cls(str(data[0]), int(data[1]), int(data[2]))


@dataclass(frozen=True)
class Split:
    """The input of one map task: ranges of files of one disk."""

    disk: str
    ranges: tuple[FileRange, ...]

    @property
    def size(self) -> int:
        return sum(r.end - r.start for r in self.ranges)

    def describe(self) -> str:
        if len(self.ranges) == 1:
            r = self.ranges[0]
            return f"{self.disk}:{r.path.lstrip('/')}"
        return f"{self.disk}:{self.ranges[0].path.lstrip('/')} (+{len(self.ranges) - 1} files)"


def list_local_files(root: str) -> list[tuple[str, int]]:
    """`list_files` for a disk in a local directory: os.scandir, several times faster."""
    out: list[tuple[str, int]] = []
    real_root = os.path.realpath(root)
    stack = [(root, "")]
    while stack:
        directory, rel = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if is_internal(entry.name):      # e.g. a job's staging directory
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, f"{rel}/{entry.name}"))
                elif entry.name != SUCCESS_NAME and (st := data_entry(real_root, entry)) is not None:   # never a link out
                    out.append((f"{rel}/{entry.name}", st.st_size))
    out.sort()
    return out


def only_under(only: str, files: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The files at or below the disk path `only` (all of them when it is empty).

    A job's output is read as a dataset this way: the directory `/JOB` of an output disk.
    """
    if not only:
        return files
    top = "/" + only.strip("/")
    return [(p, n) for p, n in files if p == top or p.startswith(top + "/")]


def list_files(disk_fs: FS) -> list[tuple[str, int]]:
    """Every regular file of a disk with its size, in a stable (sorted path) order."""
    files = getattr(disk_fs, "files", None)
    if callable(files):  # a remote chunk lists itself in one request
        return sorted((p, n) for p, n in files() if p.rsplit("/", 1)[-1] != SUCCESS_NAME)
    out: list[tuple[str, int]] = []
    for path, info in disk_fs.walk.info(namespaces=["details"]):
        if info.is_dir or is_internal(info.name) or info.name == SUCCESS_NAME:
            continue
        out.append((path, info.size))
    out.sort()
    return out


MAX_SPLIT = 128 << 20
"""The largest split `split_size_for` picks on its own (Hadoop 2's block size)."""


def split_count_for(total: int, slots: int, floor: int) -> int:
    """How many splits to cut `total` input bytes into for `slots` workers.

    A multiple of the slots, so that no wave of map tasks leaves a worker idle; splits
    of at most MAX_SPLIT bytes, and none smaller than `floor` unless that would leave a
    worker without a task. A split size the user gave is used instead, as is.
    """
    slots = max(1, slots)
    if total <= 0:
        return 1
    if total <= floor * slots:
        return slots
    waves = -(-total // (MAX_SPLIT * slots))
    return waves * slots


def plan_balanced(disk: str, files: list[tuple[str, int]], count: int) -> list[Split]:
    """Group whole files into `count` splits of nearly equal bytes, keeping file order.

    A file goes to the split its middle byte falls in, so sizes stay balanced even when
    file sizes are uneven; a file larger than a split forms one split on its own.
    """
    total = sum(n for _, n in files)
    if count <= 1 or total == 0:
        return [Split(disk, tuple(FileRange(p, 0, n) for p, n in files))] if files else []
    target = total / count
    groups: dict[int, list[FileRange]] = {}
    offset = 0
    for path, size in files:
        index = min(count - 1, int((offset + size / 2) // target))
        groups.setdefault(index, []).append(FileRange(path, 0, size))
        offset += size
    return [Split(disk, tuple(groups[i])) for i in sorted(groups)]


def split_size_for(total: int, slots: int, floor: int) -> int:
    """A split size for `total` input bytes on `slots` workers.

    At least one task per worker, so small inputs use every core; beyond that, splits grow
    from `floor` up to MAX_SPLIT, because fewer, larger map tasks emit fewer duplicate keys
    into the shuffle. A split size the user gave is used as is, not through here.
    """
    if total <= 0:
        return floor
    per_slot = -(-total // max(1, slots))
    if per_slot <= floor:
        return max(1 << 20, per_slot)
    waves = -(-total // (MAX_SPLIT * slots))
    return max(floor, min(MAX_SPLIT, -(-total // (waves * slots))))


def plan_splits(disk: str, files: list[tuple[str, int]], split_size: int, cut_files: bool) -> list[Split]:
    """Group a disk's files into splits of about `split_size` bytes.

    Args:
        disk: the disk's name, for messages.
        files: (path, size) pairs in a stable order.
        split_size: target bytes per split.
        cut_files: whether files larger than a split may be cut (line-oriented readers).
    """
    splits: list[Split] = []
    current: list[FileRange] = []
    size = 0
    for path, fsize in files:
        if cut_files and fsize > split_size:
            if current:
                splits.append(Split(disk, tuple(current)))
                current, size = [], 0
            for start in range(0, fsize, split_size):
                splits.append(Split(disk, (FileRange(path, start, min(fsize, start + split_size)),)))
            continue
        if current and size + fsize > split_size:
            splits.append(Split(disk, tuple(current)))
            current, size = [], 0
        current.append(FileRange(path, 0, fsize))
        size += fsize
    if current:
        splits.append(Split(disk, tuple(current)))
    return splits
