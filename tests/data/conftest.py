"""Fixtures for the data tests: a real text corpus, word counts, and CLI runners for load/check.

Helpers are fixtures (this directory has no __init__.py, so nothing here is imported by name).
"""
from __future__ import annotations

import pathlib
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner, Result

import geryon
from geryon.cli import main
from geryon.cli import data as data_cli
from tests.node.node_helpers import Cluster

CORPUS_FILES = 150
"""Files of Python's own library copied into the corpus (real text, nested folders)."""


@pytest.fixture(scope="session")
def corpus(stdlib_corpus: Callable[..., pathlib.Path]) -> pathlib.Path:
    """A directory of ~150 stdlib source files (a few MB of real text)."""
    return stdlib_corpus(CORPUS_FILES, max_bytes=200_000)


def _wordmap(key, value):
    return Counter(value.split())


def _total(key, values):
    return sum(values)


@pytest.fixture(scope="session")
def corpus_counts(corpus: pathlib.Path) -> Counter:
    total: Counter = Counter()
    for p in sorted(corpus.rglob("*")):
        if p.is_file():
            total.update(p.read_text(encoding="utf-8").split())
    return total


@pytest.fixture
def wordcount(tmp_path: pathlib.Path) -> Callable[..., Counter]:
    """Word count over disks (paths or ndb names) with the engine, as a Counter."""
    def run(disks: list, ndb: str | None = None, reader: str = "file", workers: int = 2, **kw) -> Counter:
        out = tmp_path / f"wc-out-{len(list(tmp_path.glob('wc-out-*')))}"
        job = geryon.Job(map=_wordmap, reduce=_total, combine=_total, partitions=3, name="wc", reader=reader, **kw)
        result = job.run([str(d) for d in disks], out=str(out), workers=workers, ndb=ndb)
        got: Counter = Counter()
        for k, v in result:
            assert k not in got
            got[k] = v
        return got
    return run


@pytest.fixture
def load_cli() -> Callable[..., Result]:
    """Run `geryon load ARGS...` (the command from geryon.cli.data) in this process."""
    def invoke(*args: object) -> Result:
        return CliRunner().invoke(data_cli.load, [str(a) for a in args], catch_exceptions=False)
    return invoke


@pytest.fixture
def check_cli() -> Callable[..., Result]:
    """Run `geryon check ARGS...` (the command from geryon.cli.data) in this process."""
    def invoke(*args: object) -> Result:
        return CliRunner().invoke(data_cli.check, [str(a) for a in args], catch_exceptions=False)
    return invoke


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run `geryon ARGS...` (the main group) in this process."""
    def invoke(*args: object) -> Result:
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return invoke


def chunk_files(disk: pathlib.Path) -> list[pathlib.Path]:
    """The data files of a chunk disk (no Geryon metadata)."""
    from geryon.disks.chunk import is_internal

    return sorted(p for p in disk.rglob("*") if p.is_file() and not is_internal(p.name))


@pytest.fixture
def data_files() -> Callable[[pathlib.Path], list[pathlib.Path]]:
    return chunk_files


@pytest.fixture
def cluster(tmp_path: pathlib.Path, secret_file: pathlib.Path) -> Iterator[Cluster]:
    """A real registry and node daemons (started by each test), stopped afterwards."""
    c = Cluster(tmp_path, secret_file)
    try:
        yield c
    finally:
        c.stop()
