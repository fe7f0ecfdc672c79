"""`Signer`: a client's signed requests and authenticated WebSockets to the cluster's servers.

A signature names one run of one server (`registry.auth.ServerIdentity`), so a client
learns each server's identity once per base URL (`GET /v1/hello`, unauthenticated) and
keeps it in a process-wide cache; a 401 marked `X-Geryon-Refused: instance` (the server
restarted) forgets it, and the request is signed again and retried once. Works for
aiohttp (`send`, `connect`) and for stdlib `http.client` callers (`headers_sync`).
With no secret, requests go unsigned and no identity is fetched. Not here: the signature
itself (`registry.auth`), frames (`registry.channel`), what any route means.
"""
from __future__ import annotations

import http.client
import json
import logging
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from registry.auth import (HEADER_NONCE, HEADER_REFUSED, HELLO_PATH, ServerIdentity,
                           sign_headers)
from registry.secretfile import signing_secret
from registry import tls
from registry.channel import Channel, join
from registry.errors import RegistryUnavailable

log = logging.getLogger(__name__)

DEFAULT_HELLO_TIMEOUT = 10.0
"""Seconds a `GET /v1/hello` may take (stdlib callers; aiohttp ones use their session's)."""


class IdentityCache:
    """Server identities by base URL (`http://host:port`); thread-safe."""

    def __init__(self) -> None:
        self._known: dict[str, ServerIdentity] = {}
        self._lock = threading.Lock()

    def get(self, base: str) -> ServerIdentity | None:
        with self._lock:
            return self._known.get(base)

    def put(self, base: str, identity: ServerIdentity) -> None:
        with self._lock:
            self._known[base] = identity

    def forget(self, base: str) -> None:
        with self._lock:
            self._known.pop(base, None)

    def clear(self) -> None:
        """Forget every server (tests: a port a test's server had may be another server's next)."""
        with self._lock:
            self._known.clear()


IDENTITIES = IdentityCache()
"""The process's cache: every Signer shares what any of them learnt."""


def base_of(url: str) -> str:
    """`http://host:port` of any URL on that server."""
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc}"


def url_host(host: str) -> str:
    """`host` as the host part of a URL: an IPv6 address in brackets (`[::1]`)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def host_of(base: str) -> str:
    """The Host header a client sends to `base` (`host:port`)."""
    return urlsplit(base).netloc


def is_instance_refusal(status: int, headers: Mapping[str, str]) -> bool:
    """Was this answer 'signed for an earlier run of this server'?"""
    return status == 401 and headers.get(HEADER_REFUSED) == "instance"


def _identity(raw: bytes, base: str) -> ServerIdentity:
    try:
        return ServerIdentity.from_wire(json.loads(raw))
    except ValueError as exc:
        raise RegistryUnavailable(f"{base}: not a Geryon server (bad {HELLO_PATH} answer: {exc})") from None


class Signer:
    """Signs requests with one secret for whichever server they go to.

    Args:
        secret: the cluster secret (None: requests go unsigned).
        cache: where identities are kept (default: the process's).
    """

    def __init__(self, secret: bytes | None, cache: IdentityCache | None = None) -> None:
        self.secret = secret
        self.cache = cache if cache is not None else IDENTITIES

    def forget(self, base: str) -> None:
        self.cache.forget(base_of(base))

    # -- identities -----------------------------------------------------------------------
    async def identity(self, http: aiohttp.ClientSession, base: str) -> ServerIdentity:
        """The identity of the server at `base` (cached).

        Raises:
            aiohttp.ClientError, asyncio.TimeoutError: as the session's requests do.
            RegistryUnavailable: the answer is not a Geryon server's.
        """
        base = base_of(base)
        known = self.cache.get(base)
        if known is None:
            async with http.get(base + HELLO_PATH, ssl=tls.ssl_for(base)) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise RegistryUnavailable(f"{base}: {HELLO_PATH} answered HTTP {resp.status}")
            known = _identity(raw, base)
            self.cache.put(base, known)
        return known

    def identity_sync(self, base: str, timeout: float = DEFAULT_HELLO_TIMEOUT) -> ServerIdentity:
        """`identity` for stdlib callers.

        Raises:
            OSError, http.client.HTTPException: unreachable.
            RegistryUnavailable: the answer is not a Geryon server's.
        """
        base = base_of(base)
        known = self.cache.get(base)
        if known is None:
            split = urlsplit(base)
            conn: http.client.HTTPConnection
            if split.scheme == "https":
                conn = http.client.HTTPSConnection(split.hostname or "", split.port, timeout=timeout,
                                                   context=tls.cluster_ssl())
            else:
                conn = tls.http_connection(base, split.hostname or "", split.port, timeout=timeout)
            try:
                conn.request("GET", HELLO_PATH)
                resp = conn.getresponse()
                raw = resp.read()
            finally:
                conn.close()
            if resp.status != 200:
                raise RegistryUnavailable(f"{base}: {HELLO_PATH} answered HTTP {resp.status}")
            known = _identity(raw, base)
            self.cache.put(base, known)
        return known

    # -- headers --------------------------------------------------------------------------
    def sign(self, identity: ServerIdentity | None, base: str, method: str, target: str,
             body: bytes = b"", *, headers: Mapping[str, str] | None = None,
             digest: str | None = None, secret: bytes | None = None) -> dict[str, str]:
        """Headers for one request to the server `identity` (unsigned: just `headers`), signed
        with `secret` (default: the newest of ours, see `registry.secretfile.signing_secret`)."""
        if self.secret is None or identity is None:
            return dict(headers or {})
        return sign_headers(secret or signing_secret(self.secret), method, target, server=identity, host=host_of(base_of(base)),
                            body=body, digest=digest, headers=headers)

    async def headers(self, http: aiohttp.ClientSession, base: str, method: str, target: str,
                      body: bytes = b"", *, headers: Mapping[str, str] | None = None,
                      digest: str | None = None) -> dict[str, str]:
        identity = await self.identity(http, base) if self.secret is not None else None
        return self.sign(identity, base, method, target, body, headers=headers, digest=digest)

    def headers_sync(self, base: str, method: str, target: str, body: bytes = b"", *,
                     headers: Mapping[str, str] | None = None, digest: str | None = None,
                     timeout: float = DEFAULT_HELLO_TIMEOUT) -> dict[str, str]:
        identity = self.identity_sync(base, timeout) if self.secret is not None else None
        return self.sign(identity, base, method, target, body, headers=headers, digest=digest)

    # -- aiohttp requests -------------------------------------------------------------------
    async def send(self, http: aiohttp.ClientSession, method: str, base: str, target: str,
                   body: bytes = b"", *, headers: Mapping[str, str] | None = None,
                   **kwargs: Any) -> aiohttp.ClientResponse:
        """Send a signed request; the response, unread (use `async with`).

        Signed again and retried once if the server restarted since we learnt it.
        """
        base = base_of(base)
        kwargs.setdefault("ssl", tls.ssl_for(base))
        for attempt in (0, 1):
            signed = await self.headers(http, base, method, target, body, headers=headers)
            resp = await http.request(method, base + target, data=body or None, headers=signed, **kwargs)
            if attempt == 0 and self.secret is not None and is_instance_refusal(resp.status, resp.headers):
                resp.release()
                self.forget(base)
                continue
            return resp
        raise AssertionError("unreachable")

    async def connect(self, http: aiohttp.ClientSession, base: str, target: str, *,
                      headers: Mapping[str, str] | None = None, what: str = "",
                      **kwargs: Any) -> Channel:
        """Open an authenticated WebSocket (`registry.channel`) to `base` + `target`.

        Raises:
            aiohttp.WSServerHandshakeError: refused (401: the signature), as `ws_connect`.
            ChannelRefused: the server failed the handshake.
            aiohttp.ClientError, asyncio.TimeoutError, OSError: unreachable.
        """
        base = base_of(base)
        kwargs.setdefault("ssl", tls.ssl_for(base))
        for attempt in (0, 1):
            secret = signing_secret(self.secret) if self.secret is not None else None
            identity = await self.identity(http, base) if secret is not None else None
            signed = self.sign(identity, base, "GET", target, headers=headers, secret=secret)
            try:
                ws = await http.ws_connect(base + target, headers=signed, **kwargs)
            except aiohttp.WSServerHandshakeError as exc:
                if (attempt == 0 and self.secret is not None and exc.headers is not None
                        and is_instance_refusal(exc.status, exc.headers)):
                    self.forget(base)
                    continue
                raise
            if secret is None or identity is None:
                return Channel(ws, None, client=True, what=what or f"connection to {base}{target}")
            return await join(ws, secret, identity, signed[HEADER_NONCE],
                              what=what or f"connection to {identity.server} {target}")
        raise AssertionError("unreachable")


__all__ = ["IDENTITIES", "IdentityCache", "Signer", "base_of", "host_of", "url_host", "is_instance_refusal"]
