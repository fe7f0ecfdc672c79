"""The cluster secret's file: where it lives, creating it on first use, loading it safely.

One rule decides the default place (`default_secret_path`: the user's config directory);
every server and client reads the secret from there unless told otherwise, and the first
one to need it creates it (`ensure_secret`, mode 0600 in 0700 directories). Stdlib only,
so the CLI can name the file without loading the network stack. Not here: signing
(`registry.auth`), reading the environment (the CLI passes it in).
"""
from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from registry.errors import RegistryError

log = logging.getLogger(__name__)

DEFAULT_SECRET_BYTES = 32
"""Length of a new cluster secret, in random bytes."""

MIN_SECRET_BYTES = 16
"""Shorter secret files are refused."""

SECRET_DIR = "geryon"
"""The directory, under the user's config directory, that holds the cluster secret."""

SECRET_NAME = "secret"
"""The cluster secret's file name."""


def default_secret_path(environ: Mapping[str, str]) -> Path:
    """Where the cluster secret lives when none is named: the one rule every command uses.

    `$XDG_CONFIG_HOME/geryon/secret`, else `$HOME/.config/geryon/secret` (the XDG base
    directory rule); `environ` is the process environment, passed in by the CLI.
    """
    base = environ.get("XDG_CONFIG_HOME") or ""
    if not os.path.isabs(base):          # XDG: a relative value is invalid, ignore it
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".config")
    return Path(base) / SECRET_DIR / SECRET_NAME


def ensure_secret(path: Path) -> tuple[bytes, bool]:
    """The secret at `path`, created first (mode 0600, parents 0700) if there is none.

    Returns:
        (secret, created): `created` is True when this call wrote the file.
    Raises:
        RegistryError: unreadable, unsafe (readable by others), or cannot be created.
    """
    if not os.path.lexists(path):
        try:
            return create_secret(path), True
        except RegistryError:
            if not os.path.lexists(path):    # not a lost race with another first use
                raise
    return load_secret(path), False


def create_secret(path: Path, *, overwrite: bool = False) -> bytes:
    """Write a new random secret to `path` (mode 0600, parents 0700) and return it.

    Raises:
        RegistryError: the file exists (and not `overwrite`) or cannot be written.
    """
    secret = secrets.token_bytes(DEFAULT_SECRET_BYTES)
    try:
        _make_private_dirs(path.parent)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(secret.hex().encode() + b"\n")
    except FileExistsError as exc:
        raise RegistryError(f"{path}: secret exists (use --force to replace it)") from exc
    except OSError as exc:
        raise RegistryError(f"{path}: {exc.strerror}") from exc
    return secret


def _make_private_dirs(directory: Path) -> None:
    """Create `directory` and any missing parents with mode 0700 (existing ones untouched)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass
        os.chmod(d, 0o700)                  # mkdir's mode is masked by the umask


def load_secret(path: Path) -> bytes:
    """Read the secret written by `create_secret` (hex text; raw bytes also accepted).

    Raises:
        RegistryError: unreadable, too short, or readable by group/others.
    """
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise RegistryError(f"{path}: {exc.strerror}") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RegistryError(f"{path}: secret is accessible by others (chmod 600 it)")
    text = data.strip()
    try:
        secret = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        secret = data
    if len(secret) < MIN_SECRET_BYTES:
        raise RegistryError(f"{path}: secret shorter than {MIN_SECRET_BYTES} bytes")
    return secret
