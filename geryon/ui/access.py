"""Who may see the dashboard: one-time login tokens minted with the cluster secret, and sessions.

A login token is `NONCE.EXPIRY.MAC`, the MAC an HMAC-SHA256 under a key derived from the
cluster secret and the dashboard's address (a token minted for one dashboard opens no other).
Anyone holding the secret can mint one (`geryon ui` prints the first, as Jupyter does);
the dashboard accepts each nonce once and swaps it for a session: a random id kept here
(only its digest), sent back as an HttpOnly, SameSite=Strict cookie. Sessions live in this
process's memory: a restarted dashboard needs a new login.

Not here: HTTP (the server reads cookies and answers refusals), the secret file.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable

from geryon.errors import GeryonError

log = logging.getLogger(__name__)

DEFAULT_LOGIN_TTL = 24 * 3600.0
"""Seconds a login token may wait before it is used."""

DEFAULT_SESSION_TTL = 12 * 3600.0
"""Seconds a browser session lasts after its login."""

DEFAULT_MAX_SESSIONS = 256
"""Sessions held at once; the oldest goes first."""

_MAX_TOKEN = 200
_KEY_LABEL = b"geryon-ui-login\0"


class AccessRefused(GeryonError):
    """A login token or session cookie the dashboard does not accept (the message says why)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class Access:
    """Login tokens and sessions of one dashboard.

    Args:
        secret: the cluster secret (a `WatchedSecret` follows rotations: each check reads it).
        audience: the dashboard's address (`host:port`), bound into every token.
        login_ttl, session_ttl, max_sessions: see the DEFAULT_* values.
        clock: wall-clock seconds (tokens carry an expiry time).
    """

    def __init__(self, secret: bytes, audience: str, *, login_ttl: float = DEFAULT_LOGIN_TTL,
                 session_ttl: float = DEFAULT_SESSION_TTL, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise GeryonError("the dashboard needs the cluster secret")
        self._secret = secret
        self.audience = audience
        self.login_ttl = login_ttl
        self.session_ttl = session_ttl
        self.max_sessions = max_sessions
        self._clock = clock
        self._used: dict[str, float] = {}           # nonce -> its token's expiry
        self._sessions: dict[bytes, float] = {}     # digest of a session id -> expiry (insertion order: age)

    def _keys(self) -> list[bytes]:
        keyring = getattr(self._secret, "keyring", None)
        secrets_ = list(keyring.accepted(self._clock())) if keyring is not None else [bytes(self._secret)]
        return [hmac.new(bytes(s), _KEY_LABEL + self.audience.encode(), hashlib.sha256).digest() for s in secrets_]

    def _mac(self, key: bytes, nonce: str, expiry: int) -> str:
        return _b64(hmac.new(key, f"{nonce}.{expiry}".encode(), hashlib.sha256).digest())

    def mint(self) -> str:
        """A fresh one-time login token for this dashboard."""
        nonce = _b64(secrets.token_bytes(18))
        expiry = int(self._clock() + self.login_ttl)
        return f"{nonce}.{expiry}.{self._mac(self._keys()[0], nonce, expiry)}"

    def redeem(self, token: str) -> str:
        """Swap a login token for a new session id (the cookie's value); the token is spent.

        Raises:
            AccessRefused: a malformed, forged, expired or already used token.
        """
        now = self._clock()
        parts = token.split(".") if len(token) <= _MAX_TOKEN else []
        if len(parts) != 3 or not parts[1].isdigit():
            raise AccessRefused("not a login token")
        nonce, expiry_text, mac = parts
        expiry = int(expiry_text)
        if not any(hmac.compare_digest(mac, self._mac(k, nonce, expiry)) for k in self._keys()):
            raise AccessRefused("login token refused: not made with this cluster's secret for this dashboard")
        if expiry < now:
            raise AccessRefused("login token expired: get a new one (`geryon ui --login-url URL`)")
        self._forget_used(now)
        if nonce in self._used:
            raise AccessRefused("login token already used: each one opens one session "
                                "(get a new one with `geryon ui --login-url URL`)")
        self._used[nonce] = float(expiry)
        session = secrets.token_urlsafe(32)
        self._sessions[_digest(session)] = now + self.session_ttl
        while len(self._sessions) > self.max_sessions:
            del self._sessions[next(iter(self._sessions))]
        log.info("dashboard: a login opened a session")
        return session

    def admits(self, session: str | None) -> bool:
        """Whether a cookie's value is a live session of this dashboard."""
        if not session or len(session) > _MAX_TOKEN:
            return False
        expiry = self._sessions.get(_digest(session))
        if expiry is None:
            return False
        if expiry < self._clock():
            del self._sessions[_digest(session)]
            return False
        return True

    def _forget_used(self, now: float) -> None:
        for nonce in [n for n, e in self._used.items() if e < now]:
            del self._used[nonce]
