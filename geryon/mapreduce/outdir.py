"""A local output directory: a job's parts committed into it all at once, with `_SUCCESS`.

`commit` renames each staged part to `part-0000r`, drops parts of an earlier run past the
job's R, and writes the `_SUCCESS` manifest last; it holds an exclusive lock on the
directory (flock on the directory itself) meanwhile, so two jobs committing into the same directory (the same `--name`,
run twice at once) leave one job's complete output, never a mix: the later commit
replaces the whole set. `_SUCCESS` is removed first, so a reader that sees it sees a
complete output. Files that are not `part-N` or `_SUCCESS` are left alone. Not here:
naming (`geryon.disks.outputs`), or parts on nodes (`geryon.node.jobservice`).
"""
from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Sequence

from geryon.disks.chunk import TEMP_MARK
from geryon.errors import JobFailed
from geryon.disks.outputs import SUCCESS_NAME, part_index, part_name, success_manifest

log = logging.getLogger(__name__)

def commit(out_dir: str, staged: Sequence[str], job_id: str, name: str,
           urls: Sequence[str] | None = None) -> list[str]:
    """Rename `staged[r]` to `out_dir/part-0000r` for every r, then write `_SUCCESS`.

    Args:
        out_dir: the output directory (exists).
        staged: the staged part files, partition order, on the same filesystem.
        job_id, name: the job, for the manifest.
        urls: where the parts also live (cluster parts), for the manifest; default the local paths.
    Returns:
        The committed paths, partition order.
    Raises:
        JobFailed: a destination exists and is not a file (nothing is committed).
    """
    finals = [os.path.join(out_dir, part_name(r)) for r in range(len(staged))]
    for dst in finals + [os.path.join(out_dir, SUCCESS_NAME)]:
        if os.path.isdir(dst) or (os.path.lexists(dst) and not os.path.isfile(dst)):
            raise JobFailed(f"cannot commit {dst}: it exists and is not a file; nothing committed")
    lock = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)   # flock on the directory: no lock file left
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            success = os.path.join(out_dir, SUCCESS_NAME)
            if os.path.lexists(success):
                os.unlink(success)
            for src, dst in zip(staged, finals):
                os.replace(src, dst)
            for entry in os.listdir(out_dir):
                r = part_index(entry)
                if r is not None and r >= len(staged):
                    os.unlink(os.path.join(out_dir, entry))
            tmp = os.path.join(out_dir, f"{TEMP_MARK}{job_id}-{SUCCESS_NAME}")
            with open(tmp, "wb") as f:
                f.write(success_manifest(job_id, name, list(urls) if urls is not None else finals))
            os.replace(tmp, success)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        os.close(lock)
    return finals
