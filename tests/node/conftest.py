"""Fixtures for the node tests: a real registry and real node daemons, as subprocesses.

Every fixture stops what it starts; each test fails if it leaks a thread.
"""
from __future__ import annotations

from pathlib import Path

from collections.abc import Iterator

import pytest

from node_helpers import Cluster


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
