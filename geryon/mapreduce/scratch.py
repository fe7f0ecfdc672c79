"""A local driver's scratch directories (map outputs, a multi-step job's step outputs), marked as
its own while it lives, and swept by a later run once their driver is gone.

A scratch directory `geryon-<job>-...` under the work directory holds a lock file, locked
(`flock`) by the driver from before it is in place until the driver ends: the kernel lets the
lock go when the driver dies, even by kill -9. `sweep` removes every scratch directory of the
work directory whose lock it can take: its driver is dead. A directory without the lock file
(made by another program, or still being made) is never touched. Not here: what goes in them
(`geryon.mapreduce.policy`, `geryon.mapreduce.steps`).
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile

log = logging.getLogger(__name__)

PREFIX = "geryon-"
"""How every scratch directory's name starts."""

LOCK_NAME = ".geryon-driver.lock"
"""The lock file in a scratch directory, locked while its driver lives."""

_held: set[int] = set()
"""This process's lock file descriptors: a forked worker closes its copies, so that a worker
outliving its driver does not keep the directory from the sweep."""


def _close_held_in_child() -> None:
    for fd in _held:
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


class Scratch:
    """A scratch directory of this process: `Scratch(f"geryon-{job_id}-", workdir)`; `close()`
    removes it (idempotent)."""

    def __init__(self, prefix: str, parent: str | None = None) -> None:
        if not prefix.startswith(PREFIX):
            raise ValueError(f"a scratch directory's name starts with {PREFIX!r}")
        self.path = tempfile.mkdtemp(prefix=prefix, dir=parent)
        tmp = os.path.join(self.path, f"{LOCK_NAME}.new")
        self._fd: int | None = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        _held.add(self._fd)
        os.rename(tmp, os.path.join(self.path, LOCK_NAME))   # in place only once locked

    def close(self) -> None:
        if self._fd is None:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        _held.discard(self._fd)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_scratch(path: str) -> bool:
    """Is `path` a scratch directory (its name, its lock file)?"""
    return (os.path.basename(path).startswith(PREFIX) and os.path.isdir(path) and not os.path.islink(path)
            and os.path.isfile(os.path.join(path, LOCK_NAME)))


def remove_if_dead(path: str) -> bool:
    """Remove the scratch directory `path` if its driver is gone (its lock is free); whether it did."""
    if not is_scratch(path):
        return False
    try:
        fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:       # held: its driver lives
            return False
        shutil.rmtree(path, ignore_errors=True)
        return True
    finally:
        os.close(fd)


def sweep(parent: str | None = None) -> list[str]:
    """Remove the scratch directories in `parent` (default: the system's temporary directory) whose
    drivers are dead; the paths removed."""
    parent = parent or tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(parent) if n.startswith(PREFIX)]
    except OSError:
        return []
    gone = []
    for name in names:
        path = os.path.join(parent, name)
        if remove_if_dead(path):
            log.info("removed %s, left by a job whose driver died", path)
            gone.append(path)
    return gone
