"""The cluster secret's file: where it lives, creating it on first use, loading it safely.

One rule decides the default place (`default_secret_path`: the user's config directory);
every server and client reads the secret from there unless told otherwise, and the first
one to need it creates it (`ensure_secret`, mode 0600 in 0700 directories). Stdlib only,
so the CLI can name the file without loading the network stack. Not here: signing
(`registry.auth`), reading the environment (the CLI passes it in).
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from registry.errors import RegistryError

log = logging.getLogger(__name__)

DEFAULT_SECRET_BYTES = 32
"""Length of a new cluster secret, in random bytes."""

MIN_SECRET_BYTES = 16
"""Shorter secret files are refused."""

DEFAULT_GRACE = 24 * 3600.0
"""Seconds the previous secret is still accepted after `geryon init --rotate`."""

OLD_SUFFIX = ".old"
"""The previous secret is kept beside the current one as `secret.old`, with its expiry."""

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


# -- rotation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OldSecret:
    """A previous cluster secret, still accepted (never used to sign) until `expires`."""

    secret: bytes
    expires: float                          # wall-clock seconds

    def accepted(self, now: float) -> bool:
        return now < self.expires


def old_secret_path(path: Path) -> Path:
    """Where the previous secret of the secret at `path` is kept."""
    return path.with_name(path.name + OLD_SUFFIX)


def rotate_secret(path: Path, *, grace: float = DEFAULT_GRACE, now: float | None = None) -> OldSecret:
    """Replace the secret at `path` with a new one; keep the old as `secret.old` for `grace` s.

    Both files are written whole under temporary names, then renamed (mode 0600).

    Returns:
        the old secret and when it stops being accepted.
    Raises:
        RegistryError: there is no secret at `path` yet, or the files cannot be written.
    """
    old = OldSecret(load_secret(path), (time.time() if now is None else now) + grace)
    _write_private(old_secret_path(path), old.secret.hex().encode() + f"\nexpires {old.expires:.3f}\n".encode())
    _write_private(path, secrets.token_bytes(DEFAULT_SECRET_BYTES).hex().encode() + b"\n")
    return old


def load_old_secret(path: Path) -> OldSecret | None:
    """The previous secret kept beside the secret at `path`, if there is one (expired or not).

    Raises:
        RegistryError: the file is unreadable, unsafe or malformed.
    """
    old_path = old_secret_path(path)
    if not os.path.lexists(old_path):
        return None
    try:
        st = old_path.stat()
        lines = old_path.read_text("ascii").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{old_path}: {getattr(exc, 'strerror', None) or exc}") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RegistryError(f"{old_path}: secret is accessible by others (chmod 600 it)")
    try:
        if len(lines) != 3 or lines[1] != "expires":
            raise ValueError("not `HEX` then `expires SECONDS`")
        old = OldSecret(bytes.fromhex(lines[0]), float(lines[2]))
    except ValueError as exc:
        raise RegistryError(f"{old_path}: malformed old secret: {exc}") from exc
    if len(old.secret) < MIN_SECRET_BYTES:
        raise RegistryError(f"{old_path}: secret shorter than {MIN_SECRET_BYTES} bytes")
    return old


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, mode 0600."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        _make_private_dirs(path.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise RegistryError(f"{path}: {exc.strerror or exc}") from exc
