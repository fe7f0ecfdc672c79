"""The cluster secret and HMAC-SHA256 request signing, for any aiohttp server or client.

A request is signed for one run of one server: over `method`, the raw path with query,
the `Host` header, the server's identity (`ServerIdentity`: kind and name, cluster id,
a random instance id per start, learnt by clients from the unauthenticated
`GET /v1/hello`), every header that changes its meaning (SIGNED_HEADERS: owner, client,
Range, Content-Type and the declared SHA-256 of the body), a timestamp and a random
nonce; the secret itself never crosses the wire. Servers refuse (401, from the headers
alone, before any body is read or handler runs) a missing, wrong, stale or replayed
signature, or one made for another server or an earlier run of this one; then body
limits per route (413), then the body's digest. Reused by the node daemon:
`auth_middleware(secret, identity)` on the server, `sign_headers(...)` (through
`registry.signer.Signer`) on the client. There is no unsigned mode: every
server requires a secret (`registry.secretfile` makes one on first use). Not here:
reading the environment (the CLI), learning identities over the network (`registry.signer`), WebSocket frames
(`registry.channel`), confidentiality (use TLS for that).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from registry.errors import AuthenticationFailed, RegistryError
from registry.ratelog import RateLog, suppressed_note
from registry.secretfile import (DEFAULT_SECRET_BYTES, MIN_SECRET_BYTES, accepted_secrets,  # noqa: F401
                                 create_secret, default_secret_path, ensure_secret,  # noqa: F401 - re-exported
                                 expired_secret, load_secret, signing_secret)

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

REQUEST_SECRET: Any = web.RequestKey("geryon.secret", bytes) if hasattr(web, "RequestKey") else "geryon.secret"
"""Where the middleware leaves, on the aiohttp request, the secret its signature was made
with (the current one or, during a rotation's grace, the previous): a WebSocket's frame key
is derived from it (`registry.channel.accept`)."""


def cluster_id(secret: bytes) -> str:
    """A public name for the cluster a secret belongs to (advertised over zeroconf)."""
    return hmac.new(secret, b"geryon cluster id", hashlib.sha256).hexdigest()[:16]


HEADER_SERVER = "X-Geryon-Server"
"""The server a request is addressed to, as the client believes (`node:n0 INSTANCE`)."""

HEADER_CONTENT_SHA256 = "X-Geryon-Content-SHA256"
"""The SHA-256 of the body, declared by the client and covered by the signature."""

HEADER_REFUSED = "X-Geryon-Refused"
"""On a 401: `instance` when the request was signed for another server or an earlier run of this
one than the one now at this address (see `WrongInstance`)."""

SIGNED_HEADERS = ("X-Geryon-Owner", "X-Geryon-Client", "Range", "Content-Type", HEADER_CONTENT_SHA256)
"""Headers that change a request's meaning: covered by every signature (absent counts too)."""

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class ServerIdentity:
    """Who a server is: its kind and name, its cluster, and a random id for this run of it.

    A signature names all three, so it is good for one server process only: not for the
    cluster's other servers, not for the same server after a restart.
    """

    server: str           # "node:n0", "registry:host:port"
    cluster: str
    instance: str

    @classmethod
    def new(cls, server: str, secret: bytes | None) -> ServerIdentity:
        """A fresh identity for a server starting now."""
        return cls(server, cluster_id(secret) if secret else "", secrets.token_hex(16))

    def to_wire(self) -> dict[str, str]:
        return {"server": self.server, "cluster": self.cluster, "instance": self.instance}

    @classmethod
    def from_wire(cls, doc: Any) -> ServerIdentity:
        """Raises ValueError on anything but a well-formed `GET /v1/hello` answer."""
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        fields = [doc.get(k) for k in ("server", "cluster", "instance")]
        if not all(isinstance(f, str) and 0 < len(f) <= 256 for f in fields):
            raise ValueError("bad server identity")
        return cls(*fields)

    @property
    def claim(self) -> str:
        """The `X-Geryon-Server` header value naming this run of this server."""
        return f"{self.server} {self.instance}"


class WrongInstance(AuthenticationFailed):
    """A request signed for another server, or an earlier run of this one, than the one now at
    this address (the client's idea of the address is stale: it should ask `GET /v1/hello` again).

    Telling the client so is safe: it re-signs for the identity it learns; a replayed request
    is still refused."""


def _message(method: str, target: str, host: str, server: ServerIdentity, timestamp: str,
             nonce: str, signed: list[str | None]) -> bytes:
    # JSON: unambiguous however the fields are chosen (an absent header is null, not "").
    return json.dumps(["geryon-request-2", method.upper(), target, host, server.server,
                       server.cluster, server.instance, timestamp, nonce, signed],
                      separators=(",", ":")).encode()


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _mac(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign_headers(secret: bytes, method: str, target: str, *, server: ServerIdentity, host: str,
                 body: bytes = b"", digest: str | None = None,
                 headers: Mapping[str, str] | None = None,
                 now: float | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers to send with one request: `headers` plus what authenticates it.

    Args:
        secret: the cluster secret (a watched one signs with its newest).
        method: HTTP method.
        target: the raw path with query string, exactly as sent (`/v1/find?x=1`).
        server: the identity of the server it is for (its `GET /v1/hello`).
        host: the `Host` header sent (`host:port`; set in the result).
        body: the exact body bytes, or
        digest: their SHA-256 in hex, for a body streamed from a file.
        headers: other headers to send; those in SIGNED_HEADERS are signed.
        now: the timestamp to sign (default: the wall clock).
        nonce: default: 128 random bits.
    """
    out = dict(headers or {})
    out["Host"] = host
    if digest is None and (body or "Content-Type" in out):
        digest = hashlib.sha256(body).hexdigest()
    if digest is not None:
        out[HEADER_CONTENT_SHA256] = digest
        out.setdefault("Content-Type", "application/octet-stream")   # what clients add anyway
    timestamp = f"{time.time() if now is None else now:.3f}"
    nonce = nonce or secrets.token_hex(16)
    signed = [out.get(h) for h in SIGNED_HEADERS]
    out.update({HEADER_SERVER: server.claim, HEADER_TIMESTAMP: timestamp, HEADER_NONCE: nonce,
                HEADER_SIGNATURE: _mac(signing_secret(secret), _message(method, target, host, server, timestamp,
                                                        nonce, signed))})
    return out


class BodyDigest:
    """Checks a body, fed in pieces, against the digest its signature declared.

    With no declared digest (no secret configured: unsigned requests) it checks nothing.
    """

    def __init__(self, declared: str | None) -> None:
        self.declared = declared.lower() if declared else None
        self._hash = hashlib.sha256() if declared else None
        self.size = 0

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> BodyDigest:
        if HEADER_SIGNATURE not in headers:
            return cls(None)
        return cls(headers.get(HEADER_CONTENT_SHA256) or EMPTY_SHA256)   # undeclared: must be empty

    def update(self, data: bytes) -> None:
        self.size += len(data)
        if self._hash is not None:
            self._hash.update(data)

    def verify(self) -> None:
        """Raise AuthenticationFailed unless the bytes seen are the ones signed."""
        if self._hash is not None and not hmac.compare_digest(self._hash.hexdigest(), self.declared or ""):
            raise AuthenticationFailed("body does not match its signed digest")


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
    """Checks signed requests to one server against the cluster secret, with replay protection.

    Reads headers only: the body's digest is declared in a signed header and checked by
    whoever reads the body (`BodyDigest`), so nothing is read before the signature holds.
    A watched secret (`registry.secretfile.WatchedSecret`) is followed as it rotates: a
    signature under the previous secret is accepted until its grace ends.
    """

    def __init__(self, secret: bytes, identity: ServerIdentity, *, window: float = DEFAULT_WINDOW,
                 max_nonces: int = DEFAULT_MAX_NONCES) -> None:
        self._secret = secret
        self.identity = identity
        self.window = window
        self.nonces = NonceCache(window, max_nonces)

    def verify(self, method: str, target: str, headers: Mapping[str, str], now: float) -> bytes:
        """Accept the request or raise AuthenticationFailed (WrongInstance) saying why.

        Returns:
            the secret the signature was made with.
        """
        timestamp = headers.get(HEADER_TIMESTAMP, "")
        nonce = headers.get(HEADER_NONCE, "")
        signature = headers.get(HEADER_SIGNATURE, "")
        if not (timestamp and nonce and signature):
            raise AuthenticationFailed("request is not signed")
        if len(nonce) > 128 or len(signature) > 128 or len(timestamp) > 32:
            raise AuthenticationFailed("malformed signature")
        getall = getattr(headers, "getall", None)
        if getall is not None and any(len(getall(h, ())) > 1 for h in (*SIGNED_HEADERS, "Host")):
            raise AuthenticationFailed("a signed header is repeated")
        claim = headers.get(HEADER_SERVER, "").split(" ")
        if claim[0] != self.identity.server:
            raise WrongInstance(f"signed for another server ({claim[0][:64]!r}, "
                                f"this is {self.identity.server})")
        if claim[-1] != self.identity.instance:
            raise WrongInstance("wrong server instance (signed for an earlier run of this server)")
        signed = [headers.get(h) for h in SIGNED_HEADERS]
        message = _message(method, target, headers.get("Host", ""), self.identity, timestamp, nonce, signed)
        given = signature.lower()
        used = next((k for k in accepted_secrets(self._secret, now)
                     if hmac.compare_digest(_mac(k, message), given)), None)
        if used is None:      # perhaps under a secret written since we last looked (a stat)
            used = next((k for k in accepted_secrets(self._secret, now, fresh=True)
                         if hmac.compare_digest(_mac(k, message), given)), None)
        if used is None:
            expired = expired_secret(self._secret, now)
            if expired is not None and hmac.compare_digest(_mac(expired.secret, message), given):
                raise AuthenticationFailed("signed with the previous cluster secret, whose grace "
                                           f"ended at {_utc(expired.expires)} (use the new secret)")
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
        return used


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STREAMED = -1
"""A route's body limit meaning: the handler streams the body itself (see `streamed`)."""

DEFAULT_CONTROL_BODY = 1 << 20
"""Largest body of a control (JSON) route, in bytes, unless the route says otherwise."""

DEFAULT_BODY_TIMEOUT = 5.0
"""Seconds a client may take to send a control body the middleware reads (a bigger body gets
more: see DEFAULT_MIN_BODY_RATE); then 408 and the connection closed, so a body trickled a byte
at a time holds a connection for seconds, not forever."""

DEFAULT_MIN_BODY_RATE = 256 << 10
"""Bytes per second a client sending a big body (a job pack, an export) must at least keep up:
such a body may take DEFAULT_BODY_TIMEOUT plus its size over this rate."""

HELLO_PATH = "/v1/hello"
"""The one unauthenticated route: the server's identity (`ServerIdentity.to_wire()`)."""


def body_limit(limit: int) -> Callable[[Handler], Handler]:
    """Mark a route handler as taking a body of up to `limit` bytes (read by the middleware)."""
    def mark(fn: Handler) -> Handler:
        fn.geryon_body_limit = limit  # type: ignore[attr-defined]
        return fn
    return mark


streamed = body_limit(STREAMED)
"""Mark a route handler as reading its body itself, checking it with `BodyDigest` as it goes."""


def route_body_limit(request: web.Request, default: int) -> int:
    handler = request.match_info.handler
    return int(getattr(handler, "geryon_body_limit", default))


def refusal(exc: AuthenticationFailed, status: int = 401) -> web.Response:
    """The answer to a refused request (the body is left unread: the connection closes)."""
    headers = {HEADER_REFUSED: "instance"} if isinstance(exc, WrongInstance) else {}
    resp = web.json_response({"error": f"authentication failed: {exc}", "kind": "auth"},
                             status=status, headers=headers)
    resp.force_close()
    return resp


def auth_middleware(secret: bytes, identity: ServerIdentity, *, window: float = DEFAULT_WINDOW,
                    clock: Callable[[], float] = time.time, max_body: int = DEFAULT_CONTROL_BODY,
                    body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
                    min_body_rate: float = DEFAULT_MIN_BODY_RATE) -> Any:
    """An aiohttp middleware: `GET /v1/hello`, then signatures, then body limits, before any handler.

    The signature is checked from the headers alone (401, the body unread); then a body
    over its route's limit (`body_limit`, default `max_body`) is refused (413, unread);
    then a small body is read (within `body_timeout` plus its size over `min_body_rate`, else
    408 and the connection closed; None: no bound) and checked against its signed digest; a
    `streamed` route's handler reads and checks its own. There is no
    open mode. Refusals are logged as warnings at most once per client address per
    interval (`registry.ratelog`), with a count of those not logged; the rest at debug level.

    Raises:
        RegistryError: `secret` is missing or too short.
    """
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise RegistryError("a cluster secret is required (run `geryon init`)")
    verifier = Verifier(secret, identity, window=window)
    rate = RateLog()                            # one line per client address per interval
    hello = web.json_response(identity.to_wire()).body

    def note(request: web.Request, exc: Exception) -> None:
        peer = request.remote or "?"
        count = rate.allow(peer, time.monotonic())
        (log.debug if count is None else log.warning)("refused %s %s from %s: %s%s", request.method,
                                                      request.path[:80], peer, exc, suppressed_note(count or 0))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == HELLO_PATH and request.method == "GET":
            return web.Response(body=hello, content_type="application/json")
        try:
            request[REQUEST_SECRET] = verifier.verify(request.method, request.raw_path, request.headers,
                                                      clock())
        except AuthenticationFailed as exc:
            note(request, exc)
            return refusal(exc)
        if not request.body_exists:
            return await handler(request)
        limit = route_body_limit(request, max_body)
        if limit == STREAMED:
            return await handler(request)
        if request.content_length is not None and request.content_length > limit:
            note(request, ValueError(f"body of {request.content_length} bytes over the limit {limit}"))
            resp = web.json_response({"error": f"request body over {limit} bytes", "kind": "bad"},
                                     status=413)
            resp.force_close()
            return resp
        within = None if body_timeout is None else \
            body_timeout + (request.content_length if request.content_length is not None else limit) / min_body_rate
        try:
            body = await asyncio.wait_for(request.read(), within)
        except asyncio.TimeoutError:
            note(request, ValueError(f"request body not sent within {within:.0f} s"))
            resp = web.json_response({"error": "request body too slow", "kind": "bad"}, status=408)
            resp.force_close()
            return resp
        if len(body) > limit:
            return web.json_response({"error": f"request body over {limit} bytes", "kind": "bad"},
                                     status=413)
        check = BodyDigest.of(request.headers)
        check.update(body)
        try:
            check.verify()
        except AuthenticationFailed as exc:
            note(request, exc)
            return refusal(exc)
        return await handler(request)

    return middleware
