"""Owned staging directories: made under a lock their process holds, swept once it is gone.

A tool that builds something in a staging directory (`geryon load` packing chunks) makes
it with `OwnedDir.make(parent, prefix)`: first a lock file `<name>.lock`, locked with
flock(2) for as long as the process lives, then the directory `<name>`
(`<prefix><pid>-<random>`). A killed process leaves both, but the kernel drops its
lock, so the next start of the same tool (`sweep(parent, prefix)`) can tell a dead
owner's staging from a live one's and removes only the former; a directory with no lock
file at all (left by an older Geryon) is removed too, since a live owner makes its lock
before its directory and removes it after. Not here: what goes in the directories.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shutil

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
"""Suffix of a staging directory's lock file, beside it."""


class OwnedDir:
    """A staging directory this process owns (`path`); `close()` removes it and its lock."""

    def __init__(self, path: str, lock_fd: int) -> None:
        self.path = path
        self._fd: int | None = lock_fd

    @classmethod
    def make(cls, parent: str, prefix: str) -> OwnedDir:
        """Lock, then make, a new directory `parent/<prefix><pid>-<random>`."""
        os.makedirs(parent, exist_ok=True)
        path = os.path.join(parent, f"{prefix}{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(path + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)    # a sweeper holds it for an instant at most
            if os.stat(path + LOCK_SUFFIX).st_ino != os.fstat(fd).st_ino:
                raise FileExistsError(f"{path}{LOCK_SUFFIX} was swept while being made")
            os.mkdir(path, 0o700)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + LOCK_SUFFIX)
            raise
        return cls(path, fd)

    def close(self) -> None:
        """Remove the directory, then the lock file; idempotent."""
        if self._fd is None:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        try:
            os.unlink(self.path + LOCK_SUFFIX)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OwnedDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _owner_alive(lock_path: str) -> bool:
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError:
        return True                       # not ours to judge (another user's, a symlink)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)                      # closing drops the lock we may have taken
    return False


def sweep(parent: str, prefix: str) -> list[str]:
    """Remove the staging directories under `parent` named `prefix*` whose owner is gone
    (their lock is free, or they have none); returns what was removed."""
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return []
    removed = []
    for name in names:
        if not name.startswith(prefix):
            continue
        path = os.path.join(parent, name)
        if name.endswith(LOCK_SUFFIX):
            target = path[:-len(LOCK_SUFFIX)]
            if os.path.lexists(target) or _owner_alive(path):
                continue                  # the directory's own turn decides; a live owner's stays
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)           # a lock whose directory is gone and owner dead
            continue
        if os.path.islink(path) or not os.path.isdir(path) or _owner_alive(path + LOCK_SUFFIX):
            continue
        log.info("removing %s, staging left by a process that was killed", path)
        shutil.rmtree(path, ignore_errors=True)
        try:
            os.unlink(path + LOCK_SUFFIX)
        except FileNotFoundError:
            pass
        removed.append(path)
    return removed
