"""Databases on disk: open errors, database= multi-file databases, re-reading on change."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import ndb
from ndb import Database, NdbError

DATA = Path(__file__).parent / "data"


def bump(path: Path, text: str) -> None:
    """Rewrite `path` and move its mtime on, so a same-size rewrite is still seen."""
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_open_a_single_file(tmp_path: Path) -> None:
    path = tmp_path / "cluster"
    shutil.copy(DATA / "cluster", path)
    db = ndb.open(path)
    assert isinstance(db, Database)
    assert db.files == (str(path),)
    assert db.path == str(path)
    assert [e.get("name") for e in db.entries] == ["d0.mbox", "d1.mbox"]
    assert db.query("name", "d0.mbox", "master") == ["host0!chunk0"]
    assert db.query("name", "d1.mbox", "replica") == ["d1.replica"]
    assert [e.get("name") for e in db.find("kfs")] == ["d0.mbox", "d1.mbox"]
    assert [e.line for e in db.find("name", "d1.mbox")] == [4]
    assert db.find("name", "d2.mbox") == []


def test_open_errors_are_one_line_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothere"
    with pytest.raises(NdbError) as info:
        ndb.open(missing)
    assert str(info.value) == f"can't open {missing}: No such file or directory"

    with pytest.raises(NdbError, match="Is a directory"):
        ndb.open(tmp_path)

    bad = tmp_path / "bad"
    bad.write_text("a=1\n\tb='x\n")
    with pytest.raises(NdbError) as info:
        ndb.open(bad)
    assert str(info.value) == f"{bad}:2: missing quote"

    binary = tmp_path / "binary"
    binary.write_bytes(b"a=1\nb=\xff\xfe\n")
    with pytest.raises(NdbError) as info:
        ndb.open(binary)
    assert str(info.value) == f"{binary}:2: not UTF-8 text"
    assert "\n" not in str(info.value)


# --- database= -----------------------------------------------------------------------

def test_database_entry_concatenates_listed_files_relative_to_the_first(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "main").write_text("database=\n\tfile=hosts file=sub/disks\nlocal=1\n")
    (tmp_path / "hosts").write_text("sys=host0 ip=10.0.0.1\n")
    (tmp_path / "sub" / "disks").write_text("name=d0.mbox master=host0!chunk0\n")
    db = ndb.open(tmp_path / "main")
    # The first file is not listed: it comes first.
    assert db.files == (str(tmp_path / "main"), str(tmp_path / "hosts"), str(tmp_path / "sub" / "disks"))
    assert [e.tuples[0].attr for e in db.entries] == ["database", "local", "sys", "name"]
    assert db.query("name", "d0.mbox", "master") == ["host0!chunk0"]
    assert db.entries[-1].file == str(tmp_path / "sub" / "disks")


def test_first_file_listed_is_read_once_in_its_place(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x=a\n")
    (tmp_path / "b").write_text("x=b\n")
    (tmp_path / "local").write_text("database=\n\tfile=a\n\tfile=local\n\tfile=b\nx=local\n")
    db = ndb.open(tmp_path / "local")
    assert [e.get("x") for e in db.find("x")] == ["a", "local", "b"]
    assert len(db.find("database", "")) == 1
    assert db.files == tuple(str(tmp_path / n) for n in ("a", "local", "b"))


def test_absolute_names_and_missing_files(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "abs").write_text("x=abs\n")
    (tmp_path / "local").write_text(f"database=\n\tfile={other / 'abs'}\n\tfile=gone\n\tfile=/no/such/ndb\n")
    db = ndb.open(tmp_path / "local")
    # Like Inferno's Db.open, a listed file that cannot be opened is skipped.
    assert db.files == (str(tmp_path / "local"), str(other / "abs"))
    assert db.query("x", "abs", "x") == ["abs"]


def test_only_database_with_the_empty_value_lists_files(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x=a\n")
    (tmp_path / "one").write_text("database=other\n\tfile=a\n")
    assert ndb.open(tmp_path / "one").files == (str(tmp_path / "one"),)
    (tmp_path / "two").write_text("database=\nx=two\n")
    assert ndb.open(tmp_path / "two").files == (str(tmp_path / "two"),)


def test_a_malformed_listed_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "bad").write_text("x=1\ny=\"open\n")
    (tmp_path / "local").write_text("database=\n\tfile=bad\n")
    with pytest.raises(NdbError) as info:
        ndb.open(tmp_path / "local")
    assert str(info.value) == f"{tmp_path / 'bad'}:2: missing quote"


def test_inferno_local_read_as_a_multi_file_database(tmp_path: Path) -> None:
    for name in ("dns", "inferno", "common"):
        shutil.copy(DATA / name, tmp_path / name)
    # Inferno's local lists /lib/ndb/...; list the copies by relative name instead.
    local = (DATA / "local").read_text().replace("/lib/ndb/", "")
    (tmp_path / "local").write_text(local)
    db = ndb.open(tmp_path / "local")
    assert db.files == tuple(str(tmp_path / n) for n in ("local", "dns", "inferno", "common"))
    # common repeats the inferno port assignments: -a order shows inferno's first.
    assert db.query("tcp", "registry", "port") == ["6675", "6675"]
    assert [e.file for e in db.find("tcp", "registry")] == [str(tmp_path / "inferno"), str(tmp_path / "common")]
    assert db.query("protocol", "tcp", "ipv4proto") == ["6"]
    assert db.query("infernosite", "", "registry") == ["your_registry_server"]
    assert db.query("dom", "a.root-servers.net", "ip") == ["198.41.0.4"]


# --- re-reading ----------------------------------------------------------------------

def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "cluster"
    path.write_text("name=d0.mbox master=host0!chunk0\n")
    db = ndb.open(path)
    assert db.query("name", "d0.mbox", "master") == ["host0!chunk0"]
    assert not db.changed()
    bump(path, "name=d0.mbox master=host9!chunk0\n")  # same size: only the mtime moves
    assert db.changed()
    assert db.query("name", "d0.mbox", "master") == ["host9!chunk0"]
    assert not db.changed()
    bump(path, "name=d0.mbox master=host1!chunk1\nname=d1.mbox\n")
    assert [e.get("name") for e in db.entries] == ["d0.mbox", "d1.mbox"]


def test_a_change_to_a_listed_file_or_the_listing_is_seen(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x=1\n")
    (tmp_path / "b").write_text("x=2\n")
    (tmp_path / "local").write_text("database=\n\tfile=a\n")
    db = ndb.open(tmp_path / "local")
    assert db.query("x", "1", "x") == ["1"]
    bump(tmp_path / "a", "x=3\n")
    assert db.find("x", "1") == []
    assert db.query("x", "3", "x") == ["3"]
    bump(tmp_path / "local", "database=\n\tfile=a file=b\n")
    assert [e.get("x") for e in db.find("x")] == ["3", "2"]


def test_a_listed_file_that_appears_later_is_noticed(tmp_path: Path) -> None:
    (tmp_path / "local").write_text("database=\n\tfile=later\n")
    db = ndb.open(tmp_path / "local")
    assert db.find("x") == []
    (tmp_path / "later").write_text("x=here\n")
    assert db.query("x", "here", "x") == ["here"]
    assert db.files[-1] == str(tmp_path / "later")


def test_a_file_broken_by_an_edit_raises_until_it_is_fixed(tmp_path: Path) -> None:
    path = tmp_path / "cluster"
    path.write_text("a=1\n")
    db = ndb.open(path)
    bump(path, "a='1\n")
    with pytest.raises(NdbError, match=":1: missing quote$"):
        db.find("a")
    with pytest.raises(NdbError):
        db.find("a")  # still broken: still an error, not stale answers
    bump(path, "a=2\n")
    assert db.query("a", "2", "a") == ["2"]


def test_a_removed_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cluster"
    path.write_text("a=1\n")
    db = ndb.open(path)
    path.unlink()
    with pytest.raises(NdbError, match="^can't open "):
        db.find("a")


def test_reload_reads_now(tmp_path: Path) -> None:
    path = tmp_path / "cluster"
    path.write_text("a=1\n")
    db = ndb.open(path)
    path.write_text("a=2\n")
    db.reload()
    assert db.find("a", "2") != []
    assert repr(db) == f"Database({str(path)!r})"
