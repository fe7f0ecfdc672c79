"""The cluster secret's file: where it lives, creating it on first use, loading it safely.

One rule decides the default place (`default_secret_path`: the user's config directory);
every server and client reads the secret from there unless told otherwise, and the first
one to need it creates it (`ensure_secret`, mode 0600 in 0700 directories). Stdlib only,
so the CLI can name the file without loading the network stack.

Rotation (`rotate_secret`) keeps the previous secret as `secret.old` with its expiry; a
`Keyring` follows both files as they change (by their stat, looked at most once a second),
and a `WatchedSecret` is the secret bytes carrying their keyring, so every server accepts
the old secret until it expires and every client signs with the newest, without restarts
and without changing what code passes around (`signing_secret`, `accepted_secrets`).

`configured_secret` is the library clients' one documented exception to "only the CLI
reads the environment": a plain script's `fs.open_fs("geryon://...")`, `RemoteFS(...)` or
`geryon.session(...)` finds the secret as the CLI would ($GERYON_SECRET_FILE, else the
default file), instead of sending unsigned requests. Not here: signing (`registry.auth`).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Mapping
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

ENV_SECRET_FILE = "GERYON_SECRET_FILE"
"""The environment variable naming the secret file (read by the CLI and `configured_secret`)."""

DEFAULT_RECHECK = 1.0
"""Seconds between looks (a stat of each file) at a watched secret's files: a rotation on
disk is followed within this."""


class NoSecret(RegistryError):
    """No cluster secret is configured for a library client (it never creates one)."""


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

    Both files are written whole under temporary names, then renamed (mode 0600). The expiry
    is kept to the millisecond, rounded up.

    Returns:
        the old secret and when it stops being accepted.
    Raises:
        RegistryError: there is no secret at `path` yet, or the files cannot be written.
    """
    # in whole milliseconds, as the file keeps it, rounded up: never a shorter grace than asked
    expires = math.ceil(((time.time() if now is None else now) + grace) * 1000) / 1000
    old = OldSecret(load_secret(path), expires)
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


# -- following the files: rotation on a running cluster ---------------------------------
def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Keyring:
    """The secrets of one secret file as it is rotated: the newest (to sign with) and the
    previous one while its grace lasts (accepted too).

    The files are re-read when their stat changes, looked at no more often than every
    `recheck` seconds (`clock` is monotonic); a file that fails to load then (half copied,
    wrong mode) is logged once and the secrets in use are kept. Thread-safe.

    Raises:
        RegistryError: (constructor) the secret file does not load.
    """

    def __init__(self, path: Path, *, recheck: float = DEFAULT_RECHECK,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path).absolute()        # the process may change directory later
        self.old_path = old_secret_path(self.path)
        self.recheck = recheck
        self._clock = clock
        self._lock = threading.Lock()
        self._stamps = (_stamp(self.path), _stamp(self.old_path))
        self._current = load_secret(self.path)
        self._old = self._load_old()
        self._checked = clock()
        self._expiry_noted: float | None = None
        self._bad_noted: str | None = None

    def _load_old(self) -> OldSecret | None:
        try:
            return load_old_secret(self.path)
        except RegistryError as exc:
            log.warning("ignoring the previous secret: %s", exc)
            return None

    def _refresh(self, fresh: bool = False) -> None:
        now = self._clock()
        if now - self._checked < self.recheck and not fresh:
            return
        with self._lock:
            self._checked = now
            stamps = (_stamp(self.path), _stamp(self.old_path))
            if stamps == self._stamps:
                return
            try:
                current = load_secret(self.path)
            except RegistryError as exc:
                if self._bad_noted != str(exc):
                    self._bad_noted = str(exc)
                    log.warning("keeping the cluster secret in use: %s", exc)
                return
            self._stamps, self._bad_noted = stamps, None
            old = self._load_old() if stamps[1] is not None else None
            if current != self._current:
                log.warning("cluster secret %s changed: signing with the new one%s", self.path,
                            f"; the previous one is accepted until {_when(old.expires)}"
                            if old is not None and old.secret != current else "")
            self._current, self._old = current, old

    def current(self) -> bytes:
        """The secret to sign with: the newest in the file."""
        self._refresh()
        return self._current

    def accepted(self, now: float, *, fresh: bool = False) -> tuple[bytes, ...]:
        """The secrets a signature may be made with at wall-clock time `now`: the current
        one, then the previous one until it expires (noting once in the log when it has).
        `fresh`: look at the files now (a signature failed: it may be under a secret just
        written), not only every `recheck` seconds."""
        self._refresh(fresh)
        old = self._old
        if old is None or old.secret == self._current:
            return (self._current,)
        if old.accepted(now):
            return (self._current, old.secret)
        if self._expiry_noted != old.expires:
            self._expiry_noted = old.expires
            log.warning("the previous cluster secret (%s) expired at %s: it is refused from now on",
                        self.old_path, _when(old.expires))
        return (self._current,)

    def expired(self, now: float) -> OldSecret | None:
        """The previous secret if its grace is over at `now` (to say why a signature fails)."""
        old = self._old
        return old if old is not None and not old.accepted(now) and old.secret != self._current else None


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))


class WatchedSecret(bytes):
    """A cluster secret as loaded from its file, carrying that file's `Keyring`.

    Its value is the secret at load time (so `cluster_id`, equality and everything that
    passes the secret around keep working); `signing_secret` and `accepted_secrets` ask the
    keyring, so rotations on disk take effect in a running process. Pickles and copies as
    the plain bytes."""

    keyring: Keyring

    def __new__(cls, keyring: Keyring) -> WatchedSecret:
        obj = super().__new__(cls, keyring.current())
        obj.keyring = keyring
        return obj

    def __reduce__(self) -> tuple[type, tuple[bytes]]:
        return (bytes, (bytes(self),))

    def __copy__(self) -> WatchedSecret:
        return self

    def __deepcopy__(self, memo: object) -> WatchedSecret:
        return self


def watch_secret(path: Path, *, recheck: float = DEFAULT_RECHECK) -> WatchedSecret:
    """The secret at `path`, following its rotations (see `Keyring`).

    Raises:
        RegistryError: the file does not load.
    """
    return WatchedSecret(Keyring(path, recheck=recheck))


def signing_secret(secret: bytes) -> bytes:
    """The secret to sign with now: a watched secret's newest, else `secret` itself."""
    keyring = getattr(secret, "keyring", None)
    return keyring.current() if keyring is not None else secret


def accepted_secrets(secret: bytes, now: float, *, fresh: bool = False) -> tuple[bytes, ...]:
    """The secrets a server accepts signatures under at wall-clock `now` (see `Keyring.accepted`)."""
    keyring = getattr(secret, "keyring", None)
    return keyring.accepted(now, fresh=fresh) if keyring is not None else (secret,)


def expired_secret(secret: bytes, now: float) -> OldSecret | None:
    """A watched secret's previous secret if its grace is over at `now`, else None."""
    keyring = getattr(secret, "keyring", None)
    return keyring.expired(now) if keyring is not None else None


def configured_secret(environ: Mapping[str, str] | None = None) -> WatchedSecret:
    """The secret a library client signs with when it is given none, found as the CLI finds it.

    `$GERYON_SECRET_FILE` if set (it must exist), else the default file
    (`default_secret_path`); never created here (a new secret would match no server). The
    one place outside the CLI that reads the environment (`environ`, default `os.environ`),
    so that plain scripts work.

    Raises:
        NoSecret: neither exists.
        RegistryError: the file does not load (unreadable, unsafe).
    """
    env = os.environ if environ is None else environ
    named = env.get(ENV_SECRET_FILE)
    path = Path(named) if named else default_secret_path(env)
    if not os.path.lexists(path):
        where = f"${ENV_SECRET_FILE}={named}" if named else str(path)
        raise NoSecret(f"no cluster secret ({where} does not exist): run `geryon init`, or copy the "
                       f"cluster's secret there")
    return watch_secret(path)
