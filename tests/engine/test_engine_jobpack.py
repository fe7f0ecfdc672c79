"""Job packs: deterministic, content-addressed, safe to unpack, and load back the same job."""
from __future__ import annotations

import io
import pathlib
import tarfile

import pytest

from geryon.mapreduce import jobpack
from geryon.mapreduce.job import Job, combine_from_script, step_from_arg

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
DISK = EXAMPLES / "disks" / "d0.mbox"


def _wordcount(**settings) -> Job:
    wc = EXAMPLES / "wordcount"
    return Job(map=step_from_arg(str(wc / "map.py"), "map"), reduce=step_from_arg(str(wc / "reduce.py"), "reduce"),
               combine=combine_from_script(str(wc / "reduce.py")), format="text", **settings)


def _parts(result) -> bytes:
    return b"".join(pathlib.Path(p).read_bytes() for p in result.parts)


def test_pack_round_trip_runs_the_same_job(tmp_path):
    job = _wordcount(partitions=3)
    pack = jobpack.build(job)
    loaded = jobpack.load(jobpack.unpack(pack.data, str(tmp_path / "cache"), pack.digest))
    assert loaded.partitions == 3 and loaded.format == "text" and loaded.name == job.name
    a = job.run([str(DISK)], out=str(tmp_path / "a"), workers=1)
    b = loaded.run([str(DISK)], out=str(tmp_path / "b"), workers=1)
    assert _parts(a) == _parts(b) and _parts(a)


def test_pack_is_deterministic_and_cached(tmp_path):
    one, two = jobpack.build(_wordcount()), jobpack.build(_wordcount())
    assert one.data == two.data and one.digest == two.digest
    first = jobpack.unpack(one.data, str(tmp_path))
    assert jobpack.unpack(two.data, str(tmp_path)) == first
    assert pathlib.Path(first).name == one.digest


def test_streaming_scripts_travel_in_the_pack(tmp_path):
    wc = EXAMPLES / "wordcount"
    job = Job(map=step_from_arg(str(wc / "map.sh"), "map"), reduce=step_from_arg(str(wc / "reduce.sh"), "reduce"),
              format="text")
    pack = jobpack.build(job)
    loaded = jobpack.load(jobpack.unpack(pack.data, str(tmp_path / "cache")))
    assert loaded.map.command[0].startswith(str(tmp_path / "cache"))
    a = job.run([str(DISK)], out=str(tmp_path / "a"), workers=1)
    b = loaded.run([str(DISK)], out=str(tmp_path / "b"), workers=1)
    assert _parts(a) == _parts(b)


def test_a_lambda_cannot_travel():
    with pytest.raises(jobpack.JobPackError, match="never pickled"):
        jobpack.build(Job(map=lambda k, v: None, reduce=lambda k, vs: None))


def test_damaged_pack_is_refused(tmp_path):
    pack = jobpack.build(_wordcount())
    with pytest.raises(jobpack.JobPackError, match="damaged"):
        jobpack.unpack(pack.data[:-1] + b"x", str(tmp_path), pack.digest)


@pytest.mark.parametrize("name,kind", [("../evil", tarfile.REGTYPE), ("/etc/evil", tarfile.REGTYPE),
                                       ("link", tarfile.SYMTYPE)])
def test_unsafe_members_are_refused(tmp_path, name, kind):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
        tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    with pytest.raises(jobpack.JobPackError):
        jobpack.unpack(buf.getvalue(), str(tmp_path / "cache"))
    assert not (tmp_path / "evil").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []
