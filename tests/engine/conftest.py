"""Fixtures for the MapReduce engine's tests: a real text corpus, CLI runners, part-file readers.

Helpers are fixtures (this directory has no __init__.py, so nothing here is imported by name).
"""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

from geryon.disks.chunk import TEMP_MARK
from geryon.cli import main

REPO = pathlib.Path(__file__).resolve().parents[2]
WORDCOUNT = REPO / "examples" / "wordcount"
CORPUS_FILES = 300
"""Files of Python's own library copied into the corpus (real text: unicode, long and short)."""

AWK_BLANKS = re.compile(r"[ \t\n]+")


@pytest.fixture(scope="session")
def corpus(stdlib_corpus: Callable[..., pathlib.Path]) -> pathlib.Path:
    """A directory disk holding ~300 files of the stdlib's source tree (nested folders kept)."""
    return stdlib_corpus(CORPUS_FILES)


def corpus_texts(disk: pathlib.Path) -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(disk.rglob("*")) if p.is_file()]


@pytest.fixture(scope="session")
def python_oracle(corpus: pathlib.Path) -> Counter:
    """What examples/wordcount/map.py counts: `str.split()` words of every file."""
    total: Counter = Counter()
    for text in corpus_texts(corpus):
        total.update(text.split())
    return total


@pytest.fixture(scope="session")
def streaming_oracle(corpus: pathlib.Path) -> Counter:
    """What examples/wordcount/map.sh counts: awk's default fields (runs of space, tab, newline)."""
    total: Counter = Counter()
    for text in corpus_texts(corpus):
        total.update(w for w in AWK_BLANKS.split(text) if w)
    return total


@pytest.fixture
def wordcount() -> pathlib.Path:
    return WORDCOUNT


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run `geryon ARGS...` in this process (click's CliRunner); stderr kept apart."""
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return invoke


@pytest.fixture
def geryon_proc() -> Callable[..., subprocess.CompletedProcess]:
    """Run `geryon ARGS...` as a real process (exit codes, environment, pipes)."""
    def run(*args: str, env: dict[str, str] | None = None, cwd: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-c", "from geryon.cli import main; main()", *map(str, args)],
                              capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)
    return run


def write_disks(root: pathlib.Path, layout: dict[str, dict[str, str]]) -> list[pathlib.Path]:
    """Directory disks under `root`, in the order given (not alphabetical), holding the files given."""
    out = []
    for disk, files in layout.items():
        d = root / disk
        d.mkdir(parents=True)
        for name, text in files.items():
            (d / name).write_text(text)
        out.append(d)
    return out


@pytest.fixture
def dir_disks() -> Callable[[pathlib.Path, dict[str, dict[str, str]]], list[pathlib.Path]]:
    return write_disks


def part_bytes(out: pathlib.Path) -> dict[str, bytes]:
    """Every committed part file in `out`, by name."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name.startswith("part-") and p.is_file()}


@pytest.fixture
def parts() -> Callable[[pathlib.Path], dict[str, bytes]]:
    return part_bytes


@pytest.fixture
def text_records() -> Callable[[pathlib.Path], list[tuple[str, str]]]:
    """The raw `key<TAB>value` records of every part file, as written (no unescaping)."""
    def read(out: pathlib.Path) -> list[tuple[str, str]]:
        records = []
        for data in part_bytes(out).values():
            lines = data.split(b"\n")
            if lines[-1] == b"":
                lines.pop()  # the final newline (or an empty part file)
            for line in lines:
                key, tab, value = line.decode("utf-8").rpartition("\t")
                assert tab, f"part line without a tab: {line!r}"
                records.append((key, value))
        return records
    return read


@pytest.fixture
def assert_nothing_committed() -> Callable[..., None]:
    """Check `out` holds exactly `before` (name -> bytes) and no staging leftovers."""
    def check(out: pathlib.Path, before: dict[str, bytes] | None = None) -> None:
        before = before or {}
        if not out.exists():
            assert not before
            return
        leftovers = [str(p) for p in out.rglob("*") if TEMP_MARK in p.name]
        assert leftovers == [], f"staging left behind: {leftovers}"
        assert part_bytes(out) == before
    return check

