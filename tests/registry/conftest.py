"""Fixtures for the registry tests: in-thread servers, real server subprocesses, secrets.

Every fixture stops what it starts; `no_thread_leaks` fails a test that leaves a thread.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from registry.server import ServerConfig
from registry_helpers import SERVE, Proc, ServerThread


@pytest.fixture(autouse=True)
def _no_thread_leaks(no_thread_leaks: None) -> None:
    """Every test here must stop the threads it starts (fixture in tests/conftest.py)."""


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
