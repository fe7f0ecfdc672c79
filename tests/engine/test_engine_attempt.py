"""The attempt vocabulary: ids, states and failure kinds, and the one `classify(exc)`."""
from __future__ import annotations

import concurrent.futures as cf
import errno
import json

import pytest
from fs import errors as fserrors

from geryon.mapreduce.attempt import (AttemptId, AttemptState, FailureKind, classify, staged_part_name, step_job_id,
                                      step_prefix, step_task_name, task_index, task_name)
from geryon.records.badrecords import BadRecord, InputError, TooManyBadRecords
from geryon.disks.checksum import ChecksumMismatch
from geryon.errors import DiskFull, GeryonError, JobDefinitionError
from geryon.mapreduce.forkpool import WorkerDied
from geryon.mapreduce.jobnodes import NodeError
from geryon.mapreduce.jobpack import JobPackError
from geryon.mapreduce.jobstore import ATTEMPT_STATES
from geryon.net.connection import NodeUnavailable
from geryon.mapreduce.reducetask import FetchFailed
from geryon.mapreduce.task import MapTask, ReduceTask, TaskResult
from geryon.records.split import Split


def test_the_strings_on_the_wire_and_in_records_are_the_old_ones() -> None:
    assert [k.value for k in FailureKind] == ["user", "disk_full", "input", "unreachable", "system", "fetch",
                                              "lost", "memory"]
    assert ATTEMPT_STATES == ("done", "failed", "lost", "ignored")
    result = TaskResult(task="m1", attempt=2, ok=False, error_kind=FailureKind.DISK_FULL)
    wire = json.dumps(result.to_json())
    assert '"error_kind": "disk_full"' in wire
    back = TaskResult.from_json(json.loads(wire))
    assert back.error_kind == FailureKind.DISK_FULL and f"{back.error_kind}" == "disk_full"
    assert f"{AttemptState.IGNORED}" == "ignored"


def test_an_attempt_id_is_written_and_read_in_one_way() -> None:
    m = MapTask(3, 1, Split("d", ()), "/in", "/work")
    r = ReduceTask(0, 2, (), "/out", ".stage")
    assert str(m.attempt_id) == "m3.a1" and str(r.attempt_id) == "r0.a2"
    assert AttemptId.parse("m3.a1") == m.attempt_id and AttemptId.of_json(m.to_json()) == m.attempt_id
    assert AttemptId.of_json(r.to_json()) == r.attempt_id
    assert m.attempt_id.is_map and not r.attempt_id.is_map and m.attempt_id.index == 3
    assert TaskResult(task="r0", attempt=2, ok=True).attempt_id == r.attempt_id
    for bad in ("m3", "x3.a1", "m.a1", "m3.a", "m3.ax"):
        with pytest.raises(ValueError, match="not an attempt id"):
            AttemptId.parse(bad)


def test_task_step_and_staged_part_names_are_written_in_one_way() -> None:
    from geryon.mapreduce.reducetask import staged_name
    from geryon.mapreduce.job import Job
    from geryon.node.jobservice import _STAGED

    assert [task_name(k, 3) for k in ("map", "m", "reduce", "r", "sample", "s")] == ["m3", "m3", "r3", "r3", "s3", "s3"]
    assert MapTask(2, 0, Split("d", ()), "/in", "/w", sample=10).id == "s2" == task_name("sample", 2)
    assert task_index("r12") == 12
    with pytest.raises(ValueError, match="not a task kind"):
        task_name("shuffle", 0)
    assert step_prefix(2) == "s2." and step_task_name(2, "r0") == "s2.r0" and step_job_id("wc-1", 2) == "wc-1-s2"
    assert AttemptId.parse(str(AttemptId(step_task_name(2, task_name("reduce", 0)), 1))) == AttemptId("s2.r0", 1)
    assert staged_part_name("my job", 3, 1) == "my job.part3.a1"
    assert _STAGED.match(staged_part_name("wc", 3, 1))   # the node accepts the shape we write
    job = Job(name="wc", map=lambda k, v: [])
    assert staged_name(job, ReduceTask(3, 1, (), "/out", ".stage")) == ".stage/wc.part3.a1"


@pytest.mark.parametrize("exc, kind", [
    (DiskFull("c0 is full"), FailureKind.DISK_FULL),
    (OSError(errno.ENOSPC, "No space left on device"), FailureKind.DISK_FULL),
    (BadRecord("a.txt:3: not JSON"), FailureKind.USER),
    (InputError("a.txt: cannot decode"), FailureKind.INPUT),
    (TooManyBadRecords("too many"), FailureKind.INPUT),
    (ChecksumMismatch("a.txt: block 0 differs"), FailureKind.INPUT),
    (NodeUnavailable("node http://h:1: Connection refused"), FailureKind.UNREACHABLE),
    (fserrors.RemoteConnectionError("gone"), FailureKind.UNREACHABLE),
    (fserrors.ResourceNotFound("/a.txt"), FailureKind.INPUT),
    (FetchFailed("http://h:1/m0.a0.out", "404"), FailureKind.FETCH),
    (WorkerDied(-9, for_memory=True), FailureKind.MEMORY),
    (WorkerDied(-9, for_memory=False), FailureKind.SYSTEM),
    (MemoryError(), FailureKind.MEMORY),
    (NodeError("n0: connection lost"), FailureKind.LOST),
    (cf.CancelledError(), FailureKind.LOST),
    (JobDefinitionError("map.py defines no map"), FailureKind.USER),
    (JobPackError("damaged pack"), FailureKind.USER),
    (SyntaxError("bad"), FailureKind.USER),
    (ImportError("no module named numpy"), FailureKind.USER),
])
def test_classify_knows_each_failure_whatever_the_context(exc: BaseException, kind: FailureKind) -> None:
    assert classify(exc) == kind
    assert classify(exc, otherwise=FailureKind.SYSTEM) == kind


@pytest.mark.parametrize("exc", [ValueError("x"), KeyError("k"), GeryonError("a message of ours")])
def test_classify_leaves_the_rest_to_the_context(exc: BaseException) -> None:
    """In a task the job's own code raised (user); around it, a bug of ours (system)."""
    assert classify(exc) == FailureKind.USER
    assert classify(exc, otherwise=FailureKind.SYSTEM) == FailureKind.SYSTEM
