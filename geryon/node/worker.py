"""A cluster task attempt, in its own process: `python -m geryon.node.worker JOB ATTEMPT` with a spec on stdin.

The node's job service starts one worker per attempt. The spec (JSON) names the unpacked
job pack, the task, this node's URL and chunks, the directory for the attempt's output
and the cluster secret (sent on stdin, never on the command line or in the
environment). The worker loads the job from the pack (files, never pickles), runs the
task with the same code local mode uses, and writes the TaskResult as JSON to the spec's
`result` path; the user's code may print anything on stdout and stderr, and sees its
attempt's id in `GERYON_TASK` (`m3.a1`; streaming steps see the task's, `m3`). JOB and ATTEMPT on the
command line are only there for people reading `ps`.

Map input: a `geryon://` location on this node is read from the chunk directory (and
verified against its checksum manifest); another node's is read through RemoteFS. When
the master's data cannot be read (the node is gone, the file is missing, a checksum does
not match) the attempt starts over on the next replica and says so on stderr.
Reduce input: a map output of this node is read from its file, another node's with an
HTTP Range request. Not here: choosing cpus, retries, commits (the driver does those).
"""
from __future__ import annotations

import http.client
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from geryon.mapreduce.attempt import AttemptId, FailureKind, classify
from geryon.disks.chunk import ChunkFS
from geryon.disks.opendisk import Inputs
from geryon.mapreduce.segments import Segment, file_chunks
from geryon.mapreduce.task import MapTask, ReduceTask, TaskResult, data_prefix

FETCH_TIMEOUT = 10.0
"""Seconds a shuffle fetch waits on a silent node before giving up on it."""

FETCH_BLOCK = 1 << 20
"""Bytes read at a time from a shuffle response."""


def run_map(job: Any, task: MapTask, inputs: Inputs, view_dir: str | None = None) -> TaskResult:
    """Run a map attempt, failing over from the master to the replicas (`maptask.run_with_replicas`).

    A streaming map's input view goes in `view_dir` (the attempt's directory on the node),
    not in the output chunk, whose bytes count against its capacity.
    """
    from geryon.mapreduce.maptask import run_with_replicas

    return run_with_replicas(job, task, inputs.open, view_dir)


def http_range(location: str, seg: Segment, secret: bytes | None, timeout: float = FETCH_TIMEOUT) -> Iterator[bytes]:
    """The bytes of one segment of a map output on another node (one signed Range request, through
    `geryon.net.connection.NodeConnection`, without its retries: a failure is a FetchFailed)."""
    from geryon.mapreduce.reducetask import FetchFailed
    from geryon.net.connection import NodeConnection, NodeUnavailable
    from registry.signer import base_of, is_instance_refusal

    end = seg.offset + seg.length - 1
    node = NodeConnection(base_of(location), secret, timeout)
    try:
        resp, conn = node.open("GET", urlsplit(location).path, headers={"Range": f"bytes={seg.offset}-{end}"},
                               retry=False)
    except NodeUnavailable as exc:
        raise FetchFailed(location, f"node unreachable: {exc.__cause__ or exc}") from exc
    try:
        if resp.status not in (200, 206):
            if is_instance_refusal(resp.status, resp.headers):
                node.signer.forget(location)     # the node restarted: the next try asks again
            raise FetchFailed(location, f"HTTP {resp.status}: {resp.read(200).decode(errors='replace')}")
        left = seg.length
        if resp.status == 200:  # the whole file: skip to the segment
            skip = seg.offset
            while skip:
                got = resp.read(min(skip, FETCH_BLOCK))
                if not got:
                    break
                skip -= len(got)
        while left > 0:
            try:
                data = resp.read(min(left, FETCH_BLOCK))
            except (OSError, http.client.HTTPException) as exc:
                raise FetchFailed(location, f"connection lost: {exc}") from exc
            if not data:
                raise FetchFailed(location, f"truncated: {left} bytes missing")
            left -= len(data)
            yield data
    finally:
        conn.close()


def make_fetch(self_url: str, job_id: str, local_dirs: str | list[str], secret: bytes | None) -> Any:
    """The reduce side's fetch: local map outputs from their file (in one of `local_dirs`,
    the job's directories on this node's output disks), others by HTTP Range."""
    from geryon.mapreduce.reducetask import FetchFailed

    prefix = data_prefix(self_url, job_id)
    dirs = [local_dirs] if isinstance(local_dirs, str) else list(local_dirs)

    def fetch(location: str, seg: Segment) -> Iterable[bytes]:
        if location.startswith(prefix):
            name = location[len(prefix):]
            path = next((p for p in (os.path.join(d, name) for d in dirs) if os.path.isfile(p)), None)
            if path is None:
                raise FetchFailed(location, "no such map output on this node")
            return file_chunks(path, seg.offset, seg.length)
        if location.startswith(("http://", "https://")):
            return http_range(location, seg, secret)
        return file_chunks(location, seg.offset, seg.length)

    return fetch


def _counted(result: TaskResult, out_root: str) -> TaskResult:
    """Count a map output against its chunk's capacity; a full chunk fails the attempt (disk_full)."""
    from geryon.errors import DiskFull

    paths = [result.output, result.output + ".index"]
    try:
        ChunkFS(out_root).account(sum(os.path.getsize(p) for p in paths), result.output)
    except DiskFull as exc:
        for p in paths:
            os.unlink(p)
        return TaskResult(task=result.task, attempt=result.attempt, ok=False, error_kind=FailureKind.DISK_FULL,
                          error=f"map task {result.task} failed: {exc}", seconds=result.seconds)
    return result


def run(spec: dict[str, Any]) -> TaskResult:
    """Run the attempt a spec describes."""
    from geryon.mapreduce import jobpack, memory
    from geryon.mapreduce.reducetask import run_reduce_task

    secret = bytes.fromhex(spec["secret"]) if spec.get("secret") else None
    if spec.get("tls_ca") is not None:         # the node speaks TLS to the cluster: so do we
        from registry.tls import use_cluster_tls

        use_cluster_tls(Path(spec["tls_ca"]) if spec["tls_ca"] else None)
    task_json = spec["task"]
    aid = AttemptId.of_json(task_json)
    os.environ["GERYON_TASK"] = str(aid)
    step = task_json.get("step", 0)   # a multi-step job: which of its pack's steps (checked by the pack)
    os.environ.update(jobpack.environment(spec["pack"], step))   # before the scripts load: they may read it
    job = jobpack.load(spec["pack"], step)
    problem = memory.budget_problem(job.sort_budget)
    if problem is not None:  # this node has not the memory: another may (retried elsewhere)
        return TaskResult(task=aid.task, attempt=aid.attempt, ok=False, error=f"task {aid}: {problem}",
                          error_kind=FailureKind.MEMORY)
    work = os.path.join(spec["out_root"], spec["staging"])
    if task_json["kind"] == "map":
        task = MapTask.from_json({**task_json, "workdir": work})
        inputs = Inputs(spec["self_url"], dict(spec.get("chunks") or {}), secret)
        result = run_map(job, task, inputs, os.path.dirname(os.path.abspath(spec["result"])))
        if result.ok and not task.sample:   # a sampling task (total order) writes nothing
            result = _counted(result, spec["out_root"])
        if result.ok:
            result.output = os.path.basename(result.output)
        return result
    rtask = ReduceTask.from_json({**task_json, "out_root": spec["out_root"], "staging": spec["staging"]})
    fetch = make_fetch(spec["self_url"], spec["job"], list(spec.get("job_dirs") or [work]), secret)
    return run_reduce_task(job, rtask, fetch)


def main() -> int:
    from geryon.mapreduce import memory

    memory.volunteer_for_oom()  # the kernel should take this attempt, not the node daemon
    spec = json.loads(sys.stdin.read())
    started = time.monotonic()
    try:
        result = run(spec)
    except Exception as exc:  # the pack could not be loaded, or a bug of ours
        from geryon.mapreduce.task import traceback_tail

        aid = AttemptId.of_json(spec.get("task", {}))
        # The job's own code does not load (an import the node cannot satisfy, a syntax
        # error, a damaged pack): the same on every node, so the job fails at once and no
        # node is blamed; anything else is ours (`classify`).
        result = TaskResult(task=aid.task, attempt=aid.attempt, ok=False,
                            error=f"task {aid.task} could not start: {type(exc).__name__}: {exc}",
                            error_kind=classify(exc, otherwise=FailureKind.SYSTEM),
                            detail=traceback_tail(exc.__cause__ or exc))
    result.seconds = time.monotonic() - started
    result.peak_rss = memory.peak_rss()
    tmp = spec["result"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result.to_json(), f)
    os.replace(tmp, spec["result"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
