"""Disks: a name plus an `fs` filesystem, and how a disk argument is resolved.

A disk argument is a path to a directory (a chunk disk or any directory), or a name such as
`d0.mbox` looked up in a local ndb file. In the ndb file a disk entry is

    name=d0.mbox kfs
        master=host0!chunk0 replica=d0.replica
        path=disks/d0.mbox
        format=mbox

where `format` is the record format `geryon load` cut it into (a job's reader by default) and `path` (relative to the ndb file's directory) says where the chunk lives on this
machine. A job's input may also be a single file or a glob (`resolve_inputs`, as Hadoop,
mrjob and madoop accept): a file is read as a disk of that one file (its directory, listing
only it), a glob expands, in sorted order, to the directories and files it matches.
Resolving names through the registry (cluster mode) is not done here.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from fs.base import FS

import ndb
from geryon.disks.chunk import ChunkFS
from geryon.disks.copies import copies_of, ndb_disks, ndb_replicas
from geryon.errors import GeryonError, UnknownDisk
from geryon.defaults import DEFAULT_NDB

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Disk:
    """A named disk: `name` for people and messages, `fs` for the bytes."""

    name: str
    fs: FS = field(compare=False)
    path: str | None = None  # the local directory, when the disk is local
    replicas: tuple[str, ...] = ()  # local directories of its replicas (ndb `replica=`), tried in order
    only: str = ""  # read only this file or directory of the disk (`/JOB` of a job's output), if set
    format: str = ""  # the record format `geryon load` recorded (ndb `format=`: a reader's name), if any
    files: tuple[str, ...] = ()  # read only these files (`/name`, a file or glob given as input), if set

    def __str__(self) -> str:
        return self.name


def open_path(path: str, name: str | None = None) -> Disk:
    """Open a local directory (chunk or plain) as a disk."""
    if not os.path.isdir(path):
        raise UnknownDisk(f"{path}: no such disk directory")
    real = os.path.abspath(path)
    return Disk(name or os.path.basename(real.rstrip(os.sep)) or real, ChunkFS(real), real)


def resolve(arg: str, ndb_file: str | None = None) -> Disk:
    """Turn a disk argument into a Disk.

    Args:
        arg: a directory path, or a disk name from the ndb file.
        ndb_file: the ndb file naming disks; None means `./ndb/cluster` if it exists.
    Raises:
        UnknownDisk: `arg` is neither a directory nor a disk named in the ndb file.
    """
    if os.sep in arg or arg.startswith(".") or os.path.isdir(arg):
        if os.path.isdir(arg):
            return open_path(arg)
        if os.sep in arg:
            raise UnknownDisk(f"{arg}: no such disk directory")
    db_path = ndb_file if ndb_file is not None else (DEFAULT_NDB if os.path.exists(DEFAULT_NDB) else None)
    if db_path is None:
        raise UnknownDisk(f"{arg}: unknown disk (not a directory, and no ndb file: use --ndb or GERYON_NDB)")
    try:
        db = ndb.open(db_path)
        entries = db.find("name", arg)
    except ndb.NdbError as exc:
        raise GeryonError(str(exc)) from exc
    if not entries:
        raise UnknownDisk(f"{arg}: unknown disk (not a directory, not named in {db_path})")
    entry = entries[0]
    local = entry.get("path")
    if not local:
        raise UnknownDisk(f"{arg}: {db_path} names the disk but gives no local path= for it")
    base = os.path.dirname(os.path.abspath(db_path))
    full = local if os.path.isabs(local) else os.path.join(base, local)
    replicas = tuple(_replica_paths(copies_of(arg, ndb_disks(db), ndb_replicas)[1:], base))
    if not os.path.isdir(full):
        if not replicas:
            raise UnknownDisk(f"{arg}: {full} (from {db_path}) is not a directory")
        log.warning("%s: master %s is gone: reading replica %s", arg, full, replicas[0])
        full, replicas = replicas[0], replicas[1:]
    disk = open_path(full, name=arg)
    return Disk(disk.name, disk.fs, disk.path, replicas, format=entry.get("format") or "")


GLOB_CHARS = frozenset("*?[")
"""Characters that make an input argument a glob (fnmatch's)."""


def is_glob(arg: str) -> bool:
    return any(c in GLOB_CHARS for c in arg)


def local_path(arg: str) -> bool:
    """Whether `arg` names something on this machine's filesystem: an existing file or directory,
    or a glob matching one (a name such as `d0.mbox` is a path only if it exists here)."""
    import glob

    if arg.startswith("geryon://"):
        return False
    return os.path.exists(arg) or (is_glob(arg) and bool(glob.glob(arg)))


def resolve_inputs(args: list[str], ndb_file: str | None = None) -> list[Disk]:
    """A job's input arguments as Disks: directories and ndb names (`resolve`), single files,
    and globs (expanded in sorted order; consecutive files of one directory make one disk).

    Raises:
        UnknownDisk: an argument is none of these, or a glob matches nothing.
    """
    import glob

    out: list[Disk] = []
    for arg in args:
        if os.path.isfile(arg):
            matches = [arg]
        elif is_glob(arg) and not os.path.isdir(arg):
            matches = sorted(glob.glob(arg))
            if not matches:
                raise UnknownDisk(f"{arg}: no file or directory matches")
        else:
            out.append(resolve(arg, ndb_file))
            continue
        for match in matches:
            if os.path.isdir(match):
                out.append(open_path(match))
            elif os.path.isfile(match):
                parent = os.path.dirname(os.path.abspath(match))
                name = "/" + os.path.basename(match)
                last = out[-1] if out else None
                if last is not None and last.files and last.path == parent:
                    out[-1] = Disk(last.name, last.fs, last.path, files=(*last.files, name))
                else:
                    base = open_path(parent)
                    out.append(Disk(base.name, base.fs, base.path, files=(name,)))
    return out


def _replica_paths(copies: list[ndb.Entry], base: str) -> list[str]:
    """The local directories of a disk's replicas (their entries, in `copies_of` order) that
    exist (`path=`, relative to `base`, the ndb file's directory)."""
    out = []
    for rep in copies:
        path = rep.get("path")
        if path:
            full = path if os.path.isabs(path) else os.path.join(base, path)
            if os.path.isdir(full):
                out.append(full)
    return out
