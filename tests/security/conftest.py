"""Fixtures for the security tests: real registry and node daemons, played against as an attacker."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.node_helpers import Cluster


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
