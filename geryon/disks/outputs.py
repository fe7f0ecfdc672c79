"""A job's output as data: part names, the `_SUCCESS` marker, and output dataset names.

Hadoop's convention: a job's output is a directory `JOB/` holding `part-00000` ...
`part-0000r` and, once every part is committed, an empty-named marker `_SUCCESS` (here it
holds a small JSON manifest: the job's id, name and part URLs). A job's output is a dataset
the next job can read: `geryon-output-of-JOB` names it (resolved through the job history
or the nodes), and so do its printed part URLs or a local output directory. Files whose
names start with `_` or `.` in an output directory are not data (Hadoop's hidden-file rule).
Pure names and parsing; not here: writing parts (the engines) or finding outputs on nodes.
"""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

log = logging.getLogger(__name__)

SUCCESS_NAME = "_SUCCESS"
"""The marker a job writes beside its parts once all are committed (Hadoop's name)."""

OUTPUT_PREFIX = "geryon-output-of-"
"""A DISK argument `geryon-output-of-JOB` names the output of the job JOB (an id or unique prefix)."""

OUTPUT_CHUNK = "_output"
"""The read-only chunk a node serves its work directory's job outputs as (when it has no `*.cpu` disk)."""

CPU_DISK_SUFFIX = ".cpu"
"""Named disks ending in this are cpus' output disks (the seed's `d<n>.cpu`)."""

_PART = re.compile(r"part-(\d{5,})\Z")


def part_name(r: int) -> str:
    """The file name of partition `r`'s part: `part-00000`."""
    return f"part-{r:05d}"


def part_index(name: str) -> int | None:
    """The partition a part file name holds (`part-00003` -> 3), or None."""
    m = _PART.match(name)
    return int(m.group(1)) if m else None


def is_hidden(name: str) -> bool:
    """Whether a file of an output directory is bookkeeping, not data (`_SUCCESS`, `.x`)."""
    return name.startswith(("_", "."))


def output_job(arg: str) -> str | None:
    """The job an output dataset name points at (`geryon-output-of-wc-...` -> `wc-...`), or None."""
    return arg[len(OUTPUT_PREFIX):] or None if arg.startswith(OUTPUT_PREFIX) else None


def success_manifest(job_id: str, name: str, parts: list[str]) -> bytes:
    """The `_SUCCESS` marker's bytes: which job wrote this output and where all its parts are."""
    return (json.dumps({"job": job_id, "name": name, "parts": parts}, indent=1) + "\n").encode()


def read_success(directory: str) -> dict[str, Any] | None:
    """A local output directory's `_SUCCESS` manifest ({} when the marker is empty), or None."""
    path = os.path.join(directory, SUCCESS_NAME)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        doc = json.loads(data) if data.strip() else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def inside(path: str, root: str) -> bool:
    """Whether `path` is `root` or below it (after resolving symlinks)."""
    p, r = os.path.realpath(path), os.path.realpath(root)
    return p == r or p.startswith(r.rstrip(os.sep) + os.sep)
