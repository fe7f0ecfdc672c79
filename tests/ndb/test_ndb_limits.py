"""Bounded ndb reading: linear parsing, limits on file, line and word, regular files only."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import ndb
from ndb import Limits, NdbError


def test_a_4_mib_word_parses_and_the_default_limit_refuses_it_with_file_and_line() -> None:
    word = "x" * (4 << 20)
    text = f"name=d0 kfs\nname=d1 big={word} tail\n\tquoted='{word}'\n"
    entries = ndb.parse(text, "cluster", ndb.UNLIMITED)       # quadratic parsing would take hours
    assert entries[1].get("big") == word and entries[1].get("quoted") == word
    assert entries[1].has("tail")
    with pytest.raises(NdbError, match=r"^cluster:2: line of 4194321 characters is over the limit of 262144$"):
        ndb.parse(text, "cluster", ndb.DEFAULT_LIMITS)
    with pytest.raises(NdbError, match=r"^cluster:2: word of \d+\+ characters is over the limit of 65536$"):
        ndb.parse(text, "cluster", Limits(max_line=None))


def test_words_across_quotes_and_pieces_still_join() -> None:
    [entry] = ndb.parse("a='it''s' b=x'y z'w c=\"q\"\"\" d\n", "f")
    assert entry.get("a") == "it's" and entry.get("b") == "xy zw" and entry.get("c") == 'q"'
    assert entry.has("d")


def test_file_targets_must_be_regular_files(tmp_path: Path) -> None:
    first = tmp_path / "cluster"
    first.write_text("database=\n\tfile=/dev/zero\nname=d0 kfs\n")
    with pytest.raises(NdbError, match=r"^/dev/zero: a character device, not a regular file: refused$"):
        ndb.open(first)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    first.write_text("database=\n\tfile=fifo\nname=d0 kfs\n")
    with pytest.raises(NdbError, match="a FIFO, not a regular file"):   # and it did not hang
        ndb.open(first)
    with pytest.raises(NdbError, match="a character device"):
        ndb.open("/dev/zero")


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "cluster"
    path.write_text("name=d0 kfs\n" * 1000)
    with pytest.raises(NdbError, match=rf"^{path}: file of 12000 bytes is over the limit of 1000$"):
        ndb.open(path, Limits(max_file=1000))
    assert len(ndb.open(path, Limits(max_file=12000)).entries) == 1000
