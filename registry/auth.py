"""The cluster secret and HMAC-SHA256 request signing, for any aiohttp server or client.

A request is signed over `method`, the raw path with query, the SHA-256 of the body, a
timestamp and a random nonce; the secret itself never crosses the wire. Servers refuse
(401, before any handler runs) a missing, wrong, stale or replayed signature. Reused by
the node daemon: `auth_middleware(secret)` on the server, `sign_headers(...)` on the
client. This module does not decide where the secret file lives (the CLI does) and
offers no confidentiality (use TLS for that).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from registry.errors import AuthenticationFailed, RegistryError

log = logging.getLogger(__name__)

DEFAULT_SECRET_BYTES = 32
"""Length of a new cluster secret, in random bytes."""

DEFAULT_WINDOW = 30.0
"""Seconds a signature's timestamp may be off the server's clock, either way."""

DEFAULT_MAX_NONCES = 1_000_000
"""Most nonces remembered at once for replay detection (about 200 bytes each).

A nonce is kept until its signed timestamp leaves the window, so at R signed requests
per second the cache holds about R * window entries: 1,000,000 is far beyond what one
Python server answers. When full, requests are refused rather than replays allowed."""

MIN_SECRET_BYTES = 16
"""Shorter secret files are refused."""

HEADER_TIMESTAMP = "X-Geryon-Timestamp"
HEADER_NONCE = "X-Geryon-Nonce"
HEADER_SIGNATURE = "X-Geryon-Signature"

_MAX_LOGGED = 1024


def create_secret(path: Path, *, overwrite: bool = False) -> bytes:
    """Write a new random secret to `path` (mode 0600, parents 0700) and return it.

    Raises:
        RegistryError: the file exists (and not `overwrite`) or cannot be written.
    """
    secret = secrets.token_bytes(DEFAULT_SECRET_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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


def cluster_id(secret: bytes | None) -> str:
    """A public name for the cluster a secret belongs to (advertised over zeroconf)."""
    if secret is None:
        return "open"
    return hmac.new(secret, b"geryon cluster id", hashlib.sha256).hexdigest()[:16]


def _message(method: str, path: str, body_digest: str, timestamp: str, nonce: str) -> bytes:
    return "\n".join((method.upper(), path, body_digest, timestamp, nonce)).encode()


def sign_headers(secret: bytes, method: str, path: str, body: bytes = b"", *,
                 now: float | None = None, nonce: str | None = None) -> dict[str, str]:
    """Headers that authenticate one request.

    Args:
        secret: the cluster secret.
        method: HTTP method.
        path: the raw path with query string, exactly as sent (`/v1/find?x=1`).
        body: the exact body bytes.
        now: the timestamp to sign (default: the wall clock).
        nonce: default: 128 random bits.
    """
    timestamp = f"{time.time() if now is None else now:.3f}"
    nonce = nonce or secrets.token_hex(16)
    digest = hashlib.sha256(body).hexdigest()
    mac = hmac.new(secret, _message(method, path, digest, timestamp, nonce), hashlib.sha256)
    return {HEADER_TIMESTAMP: timestamp, HEADER_NONCE: nonce, HEADER_SIGNATURE: mac.hexdigest()}


class NonceCache:
    """Nonces that could still be replayed; time is a parameter."""

    def __init__(self, ttl: float, max_entries: int = DEFAULT_MAX_NONCES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()      # nonce -> expiry

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, nonce: str) -> bool:
        return nonce in self._seen

    def add(self, nonce: str, now: float, expires: float | None = None) -> bool:
        """Remember `nonce` until `expires` (default `now + ttl`).

        Returns False if it is already remembered (a replay) or the cache is full.
        """
        while self._seen:
            first, expiry = next(iter(self._seen.items()))
            if expiry >= now:
                break
            del self._seen[first]
        if nonce in self._seen or len(self._seen) >= self.max_entries:
            return False
        self._seen[nonce] = now + self.ttl if expires is None else expires
        return True


class Verifier:
    """Checks signed requests against one secret, with replay protection."""

    def __init__(self, secret: bytes, *, window: float = DEFAULT_WINDOW,
                 max_nonces: int = DEFAULT_MAX_NONCES) -> None:
        self._secret = secret
        self.window = window
        self.nonces = NonceCache(window, max_nonces)

    def verify(self, method: str, path: str, body: bytes, headers: Mapping[str, str],
               now: float) -> None:
        """Accept the request or raise AuthenticationFailed saying why."""
        timestamp = headers.get(HEADER_TIMESTAMP, "")
        nonce = headers.get(HEADER_NONCE, "")
        signature = headers.get(HEADER_SIGNATURE, "")
        if not (timestamp and nonce and signature):
            raise AuthenticationFailed("request is not signed")
        if len(nonce) > 128 or len(signature) > 128 or len(timestamp) > 32:
            raise AuthenticationFailed("malformed signature")
        digest = hashlib.sha256(body).hexdigest()
        want = hmac.new(self._secret, _message(method, path, digest, timestamp, nonce),
                        hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, signature.lower()):
            raise AuthenticationFailed("bad signature")
        try:
            t = float(timestamp)
        except ValueError:
            raise AuthenticationFailed("malformed timestamp") from None
        if not abs(now - t) <= self.window:
            raise AuthenticationFailed("stale signature")
        # Usable until its timestamp leaves the window; forget it only then.
        if not self.nonces.add(nonce, now, expires=t + self.window):
            raise AuthenticationFailed("replayed signature" if nonce in self.nonces
                                       else "too many requests")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(secret: bytes | None, *, window: float = DEFAULT_WINDOW,
                    clock: Callable[[], float] = time.time) -> Any:
    """An aiohttp middleware refusing unsigned requests with 401 before any handler.

    With `secret` None every request passes (the server should then listen on loopback
    only). The first refusal for each (peer, reason) is logged as a warning, later ones
    at debug level.
    """
    verifier = Verifier(secret, window=window) if secret is not None else None
    logged: set[tuple[str, str]] = set()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if verifier is None:
            return await handler(request)
        body = await request.read() if request.body_exists else b""
        try:
            verifier.verify(request.method, request.raw_path, body, request.headers, clock())
        except AuthenticationFailed as exc:
            key = (request.remote or "?", str(exc))
            if key not in logged and len(logged) < _MAX_LOGGED:
                logged.add(key)
                log.warning("refused %s %s from %s: %s", request.method, request.path,
                            key[0], exc)
            else:
                log.debug("refused %s %s from %s: %s", request.method, request.path, key[0], exc)
            return web.json_response({"error": f"authentication failed: {exc}", "kind": "auth"},
                                     status=401)
        return await handler(request)

    return middleware
