"""A finished job's output, as its record knows it: where it is, and removing it everywhere.

The record (`geryon.mapreduce.jobstore`) keeps the job's local output directory (`output`) and, for a
cluster job, its part URLs on the nodes (`urls`: `geryon://host:port/DISK/JOB/part-0000r`).
`remove` deletes the parts and `_SUCCESS` from the local directory (nothing else in it) and
asks every node holding parts to delete `JOB/` (`DELETE /v1/jobs/JOB/output`), then marks
the record so that `geryon-output-of-JOB` says the output is gone. Not here: the verbs
(`geryon.cli.jobs`), naming (`geryon.disks.outputs`).
"""
from __future__ import annotations

import logging
import os
from typing import Any

from geryon.errors import GeryonError
from geryon.disks.outputs import SUCCESS_NAME, part_index

log = logging.getLogger(__name__)

REMOVED_NAME = "output-removed"
"""A file in a job's record directory: its output was removed with `geryon rm`."""


def where(record: dict[str, Any]) -> tuple[str, list[str]]:
    """(local output directory or "", part URLs on nodes) of a finished job."""
    summary = record.get("summary") or {}
    urls = [str(u) for u in summary.get("urls") or []]
    out = str(summary.get("output") or "")
    if not urls and not out:
        parts = [str(p) for p in summary.get("parts") or []]
        urls = [p for p in parts if p.startswith("geryon://")]
        local = [p for p in parts if not p.startswith("geryon://")]
        out = os.path.dirname(local[0]) if local else ""
    return out, urls


def removed(store_root: str, job_id: str) -> bool:
    """Whether `geryon rm` removed this job's output."""
    return os.path.exists(os.path.join(store_root, job_id, REMOVED_NAME))


def remove_on_nodes(job_id: str, urls: list[str], secret: bytes | None) -> tuple[list[str], list[str]]:
    """Ask every node holding one of `urls` (a job's parts) to delete the job's output directory.

    Returns:
        (what was removed, one line per node that did not answer or refused).
    """
    from geryon.net.connection import NodeConnection
    from geryon.disks.remote import NodeUnavailable

    gone: list[str] = []
    failures = []
    nodes = sorted({u[len("geryon://"):].split("/", 1)[0] for u in urls})
    for authority in nodes:
        try:
            with NodeConnection(f"http://{authority}", secret) as conn:
                status, body = conn.request("DELETE", f"/v1/jobs/{job_id}/output")
        except NodeUnavailable as exc:
            failures.append(f"{authority}: {exc}")
            continue
        if status != 200:
            failures.append(f"{authority}: HTTP {status}: {body[:200].decode(errors='replace')}")
        else:
            gone.append(f"geryon://{authority}/.../{job_id}")
    return gone, failures


def remove(record: dict[str, Any], store_root: str, secret: bytes | None) -> list[str]:
    """Remove a job's output everywhere; returns what was removed (paths and node URLs).

    Raises:
        GeryonError: a node holding parts did not answer or refused (what could be removed is).
    """
    job_id = str(record["id"])
    out, urls = where(record)
    gone: list[str] = []
    if out and os.path.isdir(out):
        for name in sorted(os.listdir(out)):
            if name == SUCCESS_NAME or part_index(name) is not None:
                os.unlink(os.path.join(out, name))
                gone.append(os.path.join(out, name))
        if not os.listdir(out):
            os.rmdir(out)
    removed_there, failures = remove_on_nodes(job_id, urls, secret)
    gone.extend(removed_there)
    if failures:
        raise GeryonError(f"output of {job_id} not removed on {len(failures)} node(s): {'; '.join(failures)}")
    with open(os.path.join(store_root, job_id, REMOVED_NAME), "w") as f:
        f.write("\n".join(gone) + "\n")
    return gone
