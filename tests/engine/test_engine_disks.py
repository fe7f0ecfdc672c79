"""How disk arguments resolve (path, --ndb, GERYON_NDB, ./ndb/cluster), and what a disk's input is."""
from __future__ import annotations

import pathlib

import pytest

import geryon

WORDMAP = "def map(key, value):\n    return [(w, 1) for w in value.split()]\n"
SUMREDUCE = "def reduce(key, values):\n    return sum(values)\n"


@pytest.fixture
def job(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    d = tmp_path / "job"
    d.mkdir()
    (d / "map.py").write_text(WORDMAP)
    (d / "reduce.py").write_text(SUMREDUCE)
    return d / "map.py", d / "reduce.py"


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory laid out like examples/: ndb/cluster naming two disks by relative path."""
    root = tmp_path / "site"
    for name, text in (("d0.mbox", "red green\nred\n"), ("d1.mbox", "green blue\n")):
        (root / "disks" / name).mkdir(parents=True)
        (root / "disks" / name / "000.msg").write_text(text)
    (root / "ndb").mkdir()
    (root / "ndb" / "cluster").write_text(
        "name=d0.mbox kfs\n\tmaster=local!d0.mbox\n\tpath=../disks/d0.mbox\n"
        "name=d1.mbox kfs\n\tpath=../disks/d1.mbox\n")
    return root


def _counts(out: pathlib.Path, pattern: str = "part-*") -> dict[str, int]:
    got: dict[str, int] = {}
    for p in out.glob(pattern):
        for line in p.read_text().splitlines():
            k, v = line.split("\t")
            got[k] = int(v)
    return got


EXPECTED = {"red": 2, "green": 2, "blue": 1}


def test_names_through_ndb_option(cli, job, cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli("mapreduce", *job, "d0.mbox", "d1.mbox", "--ndb", cluster / "ndb" / "cluster",
              "--out", tmp_path / "out", "-q")
    assert res.exit_code == 0, res.stderr
    assert _counts(tmp_path / "out") == EXPECTED


def test_names_through_geryon_ndb(cli, job, cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GERYON_NDB", str(cluster / "ndb" / "cluster"))
    res = cli("mapreduce", *job, "d0.mbox", "d1.mbox", "--out", tmp_path / "out", "-q")
    assert res.exit_code == 0, res.stderr
    assert _counts(tmp_path / "out") == EXPECTED


def test_names_through_default_ndb_in_cwd(cli, job, cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(cluster)
    res = cli("mapreduce", *job, "d0.mbox", "d1.mbox", "--out", tmp_path / "out", "-q")
    assert res.exit_code == 0, res.stderr
    assert _counts(tmp_path / "out") == EXPECTED


def test_the_examples_cluster(cli, job, examples, tmp_path, monkeypatch):
    """examples/ndb.cluster names the sample disks by paths relative to itself."""
    monkeypatch.chdir(tmp_path)
    by_name, by_path = tmp_path / "a", tmp_path / "b"
    res = cli("mapreduce", *job, "d0.mbox", "d1.mbox", "--ndb", examples / "ndb.cluster", "--out", by_name, "-q")
    assert res.exit_code == 0, res.stderr
    res = cli("mapreduce", *job, examples / "disks" / "d0.mbox", examples / "disks" / "d1.mbox",
              "--out", by_path, "-q")
    assert res.exit_code == 0, res.stderr
    assert _counts(by_name) == _counts(by_path) and _counts(by_name)


def test_api_takes_names_and_ndb(cluster, tmp_path):
    def wordmap(key, value):
        return [(w, 1) for w in value.split()]

    def total(key, values):
        return sum(values)

    result = geryon.Job(map=wordmap, reduce=total, partitions=2).run(
        ["d0.mbox", str(cluster / "disks" / "d1.mbox")], out=str(tmp_path / "out"), workers=1,
        ndb=str(cluster / "ndb" / "cluster"))
    assert dict(result) == EXPECTED


def test_record_keys_name_disk_and_file(cluster, tmp_path):
    def keys(key, value):
        yield key, 1

    def total(key, values):
        return sum(values)

    result = geryon.Job(map=keys, reduce=total, partitions=1).run(
        ["d0.mbox", "d1.mbox"], out=str(tmp_path / "out"), workers=1, ndb=str(cluster / "ndb" / "cluster"))
    assert dict(result) == {"d0.mbox/000.msg": 1, "d1.mbox/000.msg": 1}


def test_chunk_disk_metadata_is_not_input(cli, job, tmp_path):
    disk = tmp_path / "chunk"
    assert cli("disk", "new", disk, "--size", "1M").exit_code == 0
    (disk / "f.txt").write_text("only words\n")
    (disk / ".x.geryon-tmp-0000").write_text("half written\n")  # a write in progress
    res = cli("mapreduce", *job, disk, "--out", tmp_path / "out", "-q")
    assert res.exit_code == 0, res.stderr
    assert _counts(tmp_path / "out") == {"only": 1, "words": 1}


def test_empty_disk_gives_empty_parts(cli, job, tmp_path):
    disk = tmp_path / "empty"
    disk.mkdir()
    res = cli("mapreduce", *job, disk, "-R", 3, "--out", tmp_path / "out", "--name", "e", "-q")
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["_SUCCESS", "part-00000", "part-00001", "part-00002"]
    assert all(p.stat().st_size == 0 for p in (tmp_path / "out").glob("part-*"))


def test_rerun_with_fewer_partitions_drops_stale_parts(cli, job, cluster, tmp_path):
    out = tmp_path / "out"
    disk = cluster / "disks" / "d0.mbox"
    assert cli("mapreduce", *job, disk, "-R", 5, "--out", out, "--name", "j", "-q").exit_code == 0
    (out / "notes.txt").write_text("not ours\n")
    assert cli("mapreduce", *job, disk, "-R", 2, "--out", out, "--name", "j", "-q").exit_code == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "_SUCCESS", "notes.txt", "part-00000", "part-00001"]
    assert _counts(out) == {"red": 2, "green": 1}
    assert (out / "notes.txt").read_text() == "not ours\n"


def test_two_disks_with_one_basename_are_both_read(cli, job, tmp_path):
    """/x/data and /y/data are two disks: neither may stand in for the other.

    The engine may read both, or refuse the pair with a message naming them; it must never
    read one disk's files from the other's directory.
    """
    for parent, text in (("x", "apple apple"), ("y", "plum")):
        (tmp_path / parent / "data").mkdir(parents=True)
        (tmp_path / parent / "data" / "f.txt").write_text(text + "\n")
    out = tmp_path / "out"
    res = cli("mapreduce", *job, tmp_path / "x" / "data", tmp_path / "y" / "data", "--out", out, "-q")
    if res.exit_code == 0:
        assert _counts(out) == {"apple": 2, "plum": 1}
    else:
        assert res.exit_code == 1 and res.stderr.startswith("geryon: ")
        assert str(tmp_path / "x" / "data") in res.stderr and str(tmp_path / "y" / "data") in res.stderr
        assert not list(out.glob("part-*"))
