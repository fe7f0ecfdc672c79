"""Where a job's DISK arguments can be read, as `geryon mapreduce` checks before it chooses.

Whether each DISK can be read here (`local_problem`: a directory, file, glob or ndb `path=`
disk; local and remote DISKs together are refused at once, whatever the mode), a path of
this machine refused for a cluster job with the command that puts it there
(`refuse_local_paths`), and the local ndb file read even for a cluster job so that a syntax
error in it is one line (`check_local_ndb`).

Not here: the verb, its options and `geryon-output-of-JOB` (`geryon.cli.mapreduce`),
resolving disks (`geryon.disks.resolve`), the mode rule (`geryon.cluster.where`).
"""
from __future__ import annotations

import logging
import os

from geryon.defaults import DEFAULT_NDB
from geryon.errors import GeryonError, UnknownDisk

log = logging.getLogger(__name__)


def refuse_local_paths(disks: tuple[str, ...]) -> None:
    """A cluster job reads what its nodes serve: a file, directory or glob of this machine is
    refused in one line that says how to put it there (the nodes never read the driver's files).

    Raises:
        UnknownDisk: naming the first such argument.
    """
    from geryon.disks.resolve import is_glob, local_path

    for disk in disks:
        if (os.sep in disk or os.path.isfile(disk) or is_glob(disk)) and local_path(disk):
            raise UnknownDisk(f"{disk} is a path on this machine, and the job runs on a cluster, whose nodes "
                              f"read only the disks they serve: put it there with `geryon load --cluster {disk} "
                              f"--app NAME`, or run the job here with --local")


def check_local_ndb(ndb_file: str | None) -> None:
    """Read the local ndb file in effect, if any, even for a job bound for a cluster: a syntax
    error in it is one line (FILE:LINE: ...) rather than a disk name silently looked up elsewhere.

    Raises:
        GeryonError: the file does not parse.
    """
    import ndb

    path = ndb_file or (DEFAULT_NDB if os.path.exists(DEFAULT_NDB) else None)
    if path is None or not os.path.exists(path):
        return
    try:
        ndb.open(path)
    except ndb.NdbError as exc:
        raise GeryonError(str(exc)) from exc


def local_problem(disks: tuple[str, ...], ndb_file: str | None) -> str | None:
    """Why some DISK cannot be read on this machine (None: all are directories or ndb `path=` disks).

    Raises:
        UnknownDisk: some DISKs are local and another is not: no mode can read them all (a
            mistyped name beside local disks fails at once, not after looking for a cluster).
    """
    from geryon.disks.resolve import resolve_inputs

    problems, local = [], []
    for disk in disks:
        if disk.startswith("geryon://"):
            problems.append(f"{disk} is on a cluster node")
            continue
        try:
            for d in resolve_inputs([disk], ndb_file):
                d.fs.close()
            local.append(disk)
        except UnknownDisk as exc:
            problems.append(str(exc))
    if problems and local:
        raise UnknownDisk(problems[0] if not problems[0].endswith("is on a cluster node") else
                          f"{problems[0]}, but {local[0]} is on this machine: a job reads its disks in one place")
    return problems[0] if problems else None
