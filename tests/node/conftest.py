"""Fixtures for the node tests: a real registry and real node daemons, as subprocesses.

Every fixture stops what it starts; each test fails if it leaks a thread.
"""
from __future__ import annotations

import sys
from pathlib import Path

# See tests/registry/conftest.py: keep `registry` and `ndb` resolving to the packages.
_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _ROOT:
    sys.path.insert(0, _ROOT)
_IMPOSTERS = {r for r in ("registry", "ndb")
              if r in sys.modules and getattr(sys.modules[r], "__file__", None) is None}
for _name in [m for m in sys.modules if m.split(".")[0] in _IMPOSTERS]:
    del sys.modules[_name]

import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from node_helpers import Cluster  # noqa: E402
from registry.auth import create_secret, load_secret  # noqa: E402


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            return
        time.sleep(0.05)
    pytest.fail(f"leaked threads: {extra}")


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    create_secret(path)
    return path


@pytest.fixture
def secret(secret_file: Path) -> bytes:
    return load_secret(secret_file)


@pytest.fixture
def cluster(tmp_path: Path, secret_file: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, secret_file)
    try:
        yield c
    finally:
        c.stop()
