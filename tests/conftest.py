"""Fixtures shared by every test package: the repository's paths and a clean CLI runner."""
from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Iterator

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture
def examples() -> pathlib.Path:
    return EXAMPLES


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own registry, secret or ndb settings."""
    for var in ("GERYON_REGISTRY", "GERYON_NDB", "GERYON_SECRET_FILE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def no_thread_leaks() -> Iterator[None]:
    """Fail the test if it leaves a thread running (packages opt in with an autouse wrapper)."""
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
def secret_file(tmp_path: pathlib.Path) -> pathlib.Path:
    """A fresh cluster secret (mode 0600) in the test's directory."""
    from registry.auth import create_secret

    path = tmp_path / "secret"
    create_secret(path)
    return path


@pytest.fixture
def secret(secret_file: pathlib.Path) -> bytes:
    from registry.auth import load_secret

    return load_secret(secret_file)
