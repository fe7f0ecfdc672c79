"""Fixtures for the registry tests: in-thread servers, real server subprocesses, secrets.

Every fixture stops what it starts; `no_thread_leaks` fails a test that leaves a thread.
"""
from __future__ import annotations

import sys
from pathlib import Path

# pytest puts tests/ and tests/registry on sys.path ahead of the editable install, so
# `registry` and `ndb` would resolve to the test directories as namespace packages
# (their __init__ never runs). Put the repository first and drop such imposters.
_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _ROOT:
    sys.path.insert(0, _ROOT)
_IMPOSTERS = {r for r in ("registry", "ndb")
              if r in sys.modules and getattr(sys.modules[r], "__file__", None) is None}
for _name in [m for m in sys.modules if m.split(".")[0] in _IMPOSTERS]:
    del sys.modules[_name]

import os  # noqa: E402 - after the sys.path repair above
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from registry.auth import create_secret
from registry.server import ServerConfig
from registry_helpers import SERVE, Proc, ServerThread


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
    from registry.auth import load_secret
    return load_secret(secret_file)


@pytest.fixture
def serve_thread() -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def start(**changes: object) -> ServerThread:
        config = replace(ServerConfig(host="127.0.0.1", port=0, mdns=False), **changes)
        st = ServerThread(config).__enter__()
        started.append(st)
        return st

    yield start
    for st in reversed(started):
        st.__exit__(None, None, None)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start `geryon ARGS...` subprocesses; all are killed at teardown."""
    started: list[Proc] = []

    def start(*args: str, env: dict[str, str] | None = None, stdout: int = subprocess.PIPE) -> Proc:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("GERYON_")}
        full_env.update(env or {})
        full_env.setdefault("XDG_CONFIG_HOME", str(tmp_path / "config"))
        # stderr to a file: an unread pipe fills up and blocks the process mid-log.
        err = open(tmp_path / f"proc{len(started)}.err", "w")  # noqa: SIM115 - closed in kill()
        p = Proc(subprocess.Popen(SERVE + list(args), stdout=stdout, stderr=err,
                                  text=True, env=full_env, cwd=tmp_path), err)
        started.append(p)
        return p

    yield start
    for p in reversed(started):
        p.kill()
