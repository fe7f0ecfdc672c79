"""Fixtures shared by every test package: the repository's paths and a clean CLI runner."""
from __future__ import annotations

import pathlib

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
