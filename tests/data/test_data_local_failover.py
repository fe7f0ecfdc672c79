"""Local mode reads a replica when the master chunk is damaged or gone (ndb `replica=` with `path=`)."""
from __future__ import annotations

import pathlib
import shutil

import pytest

from geryon.errors import JobFailed
from geryon.ingest.load import load


def _flip(path: pathlib.Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))


@pytest.fixture
def replicated(corpus, tmp_path):
    return load([str(corpus)], "rep", chunk_size=512 << 10, replicas=2, to=str(tmp_path / "disks"),
                ndb_file=str(tmp_path / "ndb"))


def test_damaged_master_is_read_from_its_replica(replicated, tmp_path, wordcount, corpus_counts, data_files,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    names = [d.name for d in replicated.disks]
    victim = data_files(pathlib.Path(replicated.disks[1].path))[2]
    _flip(victim)
    got = wordcount(names, ndb=str(tmp_path / "ndb"), workers=1)
    assert got == corpus_counts
    said = [line for line in capfd.readouterr().err.splitlines() if "reading replica" in line]
    assert len(said) == 1 and "damaged" in said[0], said      # said once, on the job's stderr


def test_missing_master_directory_is_read_from_its_replica(replicated, tmp_path, wordcount, corpus_counts) -> None:
    shutil.rmtree(replicated.disks[0].path)
    got = wordcount([d.name for d in replicated.disks], ndb=str(tmp_path / "ndb"))
    assert got == corpus_counts


def test_damage_in_every_copy_fails_the_job(replicated, tmp_path, wordcount, data_files) -> None:
    master = pathlib.Path(replicated.disks[1].path)
    victim = data_files(master)[2]
    rel = victim.relative_to(master)
    _flip(victim)
    for path in replicated.replica_paths:
        if (pathlib.Path(path) / rel).exists() and pathlib.Path(path).name.startswith(master.name):
            _flip(pathlib.Path(path) / rel)
    with pytest.raises(JobFailed, match=r"damaged: checksum mismatch"):
        wordcount([d.name for d in replicated.disks], ndb=str(tmp_path / "ndb"))
