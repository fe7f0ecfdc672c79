"""A finished job's output, as its record knows it: where it is, and removing it everywhere.

The record (`geryon.mapreduce.jobstore`) keeps the job's local output directory (`output`) and, for a
cluster job, its part URLs on the nodes (`urls`: `geryon://host:port/DISK/JOB/part-0000r`).
`remove` deletes the parts and `_SUCCESS` from the local directory (nothing else in it) and
asks every node holding parts to delete `JOB/` (`DELETE /v1/jobs/JOB/output`), then marks
the record so that `geryon-output-of-JOB` says the output is gone. A multi-step job's record also
lists the intermediate step outputs not removed yet (`intermediate`: a driver killed between
steps, or a node away when the job ended): those go too, the local scratch directory if its
driver is dead, `JOB-s<i>/` on the nodes listed. Not here: the verbs
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


def remove_intermediate(record: dict[str, Any], secret: bytes | None) -> tuple[list[str], list[str]]:
    """Remove the intermediate step outputs a multi-step job's record lists (only its own:
    `JOB-s<i>` on nodes, a directory of its own scratch directory here).

    Returns:
        (what was removed, one line per node that did not answer or refused).
    """
    from geryon.mapreduce.scratch import PREFIX, remove_if_dead

    job_id = str(record["id"])
    gone: list[str] = []
    failures: list[str] = []
    for entry in record.get("intermediate") or []:
        sid = str(entry.get("id", "")) if isinstance(entry, dict) else ""
        if not sid.startswith(f"{job_id}-s") or not sid[len(job_id) + 2:].isdigit():
            continue
        local = str(entry.get("dir") or "")
        scratch = os.path.dirname(local)
        if local and os.path.basename(scratch).startswith(f"{PREFIX}{job_id}-"):
            # the steps' directory, and the map outputs of each step's driver beside it
            workdir = os.path.dirname(scratch)
            for name in sorted(os.listdir(workdir)) if os.path.isdir(workdir) else []:
                path = os.path.join(workdir, name)
                if name.startswith(f"{PREFIX}{job_id}-") and remove_if_dead(path):
                    gone.append(path)
        nodes = [str(a) for a in entry.get("nodes") or []]
        if nodes:
            removed_there, failed = remove_on_nodes(sid, [f"geryon://{a}/" for a in nodes], secret)
            gone.extend(removed_there)
            failures.extend(failed)
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
    removed_there, failed = remove_intermediate(record, secret)
    gone.extend(removed_there)
    failures.extend(failed)
    if failures:
        raise GeryonError(f"output of {job_id} not removed on {len(failures)} node(s): {'; '.join(failures)}")
    with open(os.path.join(store_root, job_id, REMOVED_NAME), "w") as f:
        f.write("\n".join(gone) + "\n")
    return gone
