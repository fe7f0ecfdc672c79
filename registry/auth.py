"""The cluster secret and HMAC-SHA256 request signing, for any aiohttp server or client.

A request is signed over `method`, the raw path with query, the SHA-256 of the body, a
timestamp and a random nonce; the secret itself never crosses the wire. Servers refuse
(401, before any handler runs) a missing, wrong, stale or replayed signature. Reused by
the node daemon: `auth_middleware(secret)` on the server, `sign_headers(...)` on the
client. There is no unsigned mode: every server requires a secret, and a missing one is
created on first use (`ensure_secret`) at the one default place (`default_secret_path`).
Not here: reading the environment (the CLI passes it in), confidentiality (`registry.tls`).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from registry.errors import AuthenticationFailed, RegistryError
from registry.secretfile import (DEFAULT_SECRET_BYTES, MIN_SECRET_BYTES, create_secret,  # noqa: F401 - re-exported
                                 default_secret_path, ensure_secret, load_secret)

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 30.0
"""Seconds a signature's timestamp may be off the server's clock, either way."""

DEFAULT_MAX_NONCES = 1_000_000
"""Most nonces remembered at once for replay detection (about 200 bytes each).

A nonce is kept until its signed timestamp leaves the window, so at R signed requests
per second the cache holds about R * window entries: 1,000,000 is far beyond what one
Python server answers. When full, requests are refused rather than replays allowed."""

HEADER_TIMESTAMP = "X-Geryon-Timestamp"
HEADER_NONCE = "X-Geryon-Nonce"
HEADER_SIGNATURE = "X-Geryon-Signature"

_MAX_LOGGED = 1024


def cluster_id(secret: bytes) -> str:
    """A public name for the cluster a secret belongs to (advertised over zeroconf)."""
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


def auth_middleware(secret: bytes, *, window: float = DEFAULT_WINDOW,
                    clock: Callable[[], float] = time.time) -> Any:
    """An aiohttp middleware refusing unsigned requests with 401 before any handler.

    There is no open mode: a server without a secret is a programming error. The first
    refusal for each (peer, reason) is logged as a warning, later ones at debug level.

    Raises:
        RegistryError: `secret` is missing or too short.
    """
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise RegistryError("a cluster secret is required (run `geryon init`)")
    verifier = Verifier(secret, window=window)
    logged: set[tuple[str, str]] = set()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
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
