"""Fixtures for the taskfs tests: a registry and a three-level tree of real node daemons.

The tree is shared by a module's tests (starting four daemons costs seconds); every test
using it must leave it as it found it — no session, no reservation, no process on any
node — which `tree` checks after each test. Tests that kill or freeze nodes make their
own with `fresh_tree`.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.auth import create_secret
from taskfs_helpers import Cluster, Tree, wait_until


@pytest.fixture(autouse=True)
def _no_thread_leaks(no_thread_leaks: None) -> None:
    """Every test here must stop the threads it starts (fixture in tests/conftest.py)."""


@pytest.fixture
def cluster(tmp_path: Path, secret_file: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, secret_file)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def _shared_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    tmp = tmp_path_factory.mktemp("tree")
    create_secret(tmp / "secret")
    c = Cluster(tmp, tmp / "secret")
    try:
        yield Tree(c)
    finally:
        c.stop()


@pytest.fixture
def tree(_shared_tree: Tree) -> Iterator[Tree]:
    """The module's tree; after the test, nothing may be left reserved or running anywhere."""
    yield _shared_tree
    wait_until(_shared_tree.idle, 6)


@pytest.fixture
def fresh_tree(cluster: Cluster) -> Tree:
    """A tree of its own, for tests that kill or freeze nodes."""
    return Tree(cluster)
