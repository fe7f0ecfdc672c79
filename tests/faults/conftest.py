"""Fixtures for the fault tests: a real three-node cluster with replicated disks."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.fault_helpers import FaultCluster, write_corpus


@pytest.fixture(autouse=True)
def _no_thread_leaks(no_thread_leaks: None) -> None:
    """Every test here must stop the threads it starts (fixture in tests/conftest.py)."""


@pytest.fixture
def corpus() -> dict[str, dict[str, bytes]]:
    return write_corpus(Path("."), disks=4, files=6, lines=300)


@pytest.fixture
def fault_cluster(tmp_path: Path, secret_file: Path, corpus: dict[str, dict[str, bytes]]) -> Iterator[FaultCluster]:
    c = FaultCluster(tmp_path, secret_file, corpus)
    try:
        c.start()
        yield c
    finally:
        c.stop()
