"""`Channel`: a WebSocket whose every frame is authenticated, for both ends of every socket.

The upgrade request is a signed request like any other (`registry.auth`): fresh, bound to
this run of this server, never accepted twice. The server's 101 answer carries a fresh
nonce and proof that it holds the secret (`X-Geryon-Channel`), which the client checks;
both derive a key for this one connection from the secret, both nonces (the client's is
the signed upgrade's nonce) and the server's identity (RFC 5869 HKDF-style,
HMAC-SHA256). The client's first frame, MAC'd under that key, is its proof: the handshake
costs no round trip of its own. After that every text or binary
frame carries a sequence number per direction and a 128-bit MAC under that key over
direction, type, sequence and payload: text frames as `SEQ.MAC.PAYLOAD`, binary frames
with an 8-byte sequence and the MAC in front. A frame that fails (forged, reordered,
replayed, dropped, from the other direction) closes the connection (1008) and logs one
refusal; the reader then sees the socket closed. A server's end also closes (1008), at
its next frame, a connection whose secret is no longer accepted (a rotation's grace is
over, see `registry.secretfile.Keyring`). With no secret a Channel passes frames through
untouched. Control frames (ping, pong, close) carry no data and are not MAC'd.
Not here: signing the upgrade request (`registry.auth`, `registry.signer`), what the
frames mean (each service).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import struct
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from registry.auth import HEADER_NONCE, REQUEST_SECRET, AuthenticationFailed, ServerIdentity
from registry.secretfile import accepted_secrets, signing_secret

log = logging.getLogger(__name__)

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
"""Seconds either end waits for the other's half of the handshake."""

MAC_BYTES = 16
"""Bytes of HMAC-SHA256 kept per frame (128 bits)."""

CLOSE_POLICY = 1008
"""The WebSocket close code for a frame that failed its check (RFC 6455 7.4.1)."""

_SEQ = struct.Struct(">Q")
_CLOSED = aiohttp.WSMessage(WSMsgType.CLOSED, None, None)


class ChannelRefused(AuthenticationFailed):
    """The other end of a WebSocket failed the handshake (wrong secret, or not our server)."""


def _key(secret: bytes, server: ServerIdentity, client_nonce: str, server_nonce: str) -> bytes:
    info = json.dumps(["geryon-channel-1", server.server, server.cluster, server.instance,
                       client_nonce, server_nonce]).encode()
    prk = hmac.digest(secret, info, "sha256")                      # HKDF-Extract
    return hmac.digest(prk, b"geryon frame key\x01", "sha256")     # HKDF-Expand, one block


def _proof(key: bytes, who: bytes) -> str:
    return hmac.digest(key, b"proof " + who, "sha256").hex()


class Channel:
    """An open WebSocket with a sequence number and MAC on every frame (see the module).

    Offers what the sites used of aiohttp's sockets: `send_str`, `send_json`,
    `send_bytes`, `receive`, `async for`, `close`, `closed`, `async with`.
    """

    def __init__(self, ws: Any, key: bytes | None, *, client: bool, what: str,
                 retired: Callable[[], bool] | None = None) -> None:
        self.ws = ws
        self._key = key
        self._retired = retired
        self._out, self._in = (b"c", b"s") if client else (b"s", b"c")
        self._sent = 0
        self._received = 0
        self._lock = asyncio.Lock()
        self.what = what
        self.refused: str | None = None

    # -- frames ---------------------------------------------------------------------------
    def _mac(self, direction: bytes, kind: bytes, seq: int, payload: bytes) -> bytes:
        assert self._key is not None
        return hmac.digest(self._key, direction + kind + _SEQ.pack(seq) + payload, "sha256")[:MAC_BYTES]

    async def _check_secret(self) -> None:
        """Close a connection whose secret was retired (a rotation's grace ended, or
        `geryon init --force`): it lives no longer than new handshakes under that secret."""
        if self._retired is not None and self.refused is None and self._retired():
            self.refused = "opened with a cluster secret no longer accepted"
            log.warning("closed %s: %s", self.what, self.refused)
            await self.ws.close(code=CLOSE_POLICY, message=b"secret retired")

    async def send_str(self, data: str) -> None:
        if self._key is None:
            await self.ws.send_str(data)
            return
        await self._check_secret()
        if self.refused is not None:
            raise ConnectionResetError(f"{self.what}: closed ({self.refused})")
        async with self._lock:             # sequence order is wire order
            self._sent += 1
            mac = self._mac(self._out, b"t", self._sent, data.encode())
            await self.ws.send_str(f"{self._sent}.{mac.hex()}.{data}")

    async def send_json(self, obj: Any) -> None:
        await self.send_str(json.dumps(obj))

    async def send_bytes(self, data: bytes) -> None:
        if self._key is None:
            await self.ws.send_bytes(data)
            return
        await self._check_secret()
        if self.refused is not None:
            raise ConnectionResetError(f"{self.what}: closed ({self.refused})")
        async with self._lock:
            self._sent += 1
            mac = self._mac(self._out, b"b", self._sent, data)
            await self.ws.send_bytes(_SEQ.pack(self._sent) + mac + data)

    def _open(self, msg: aiohttp.WSMessage) -> aiohttp.WSMessage:
        """The frame's payload, or raise ValueError if it does not check."""
        seq = self._received + 1
        if msg.type == WSMsgType.TEXT:
            head, sep, rest = msg.data.partition(".")
            mac_hex, sep2, payload = rest.partition(".")
            if not (sep and sep2) or head != str(seq):
                raise ValueError("frame out of sequence" if sep and sep2 and head.isdigit() else "malformed frame")
            try:
                mac = bytes.fromhex(mac_hex)
            except ValueError:
                raise ValueError("malformed frame") from None
            if not hmac.compare_digest(mac, self._mac(self._in, b"t", seq, payload.encode())):
                raise ValueError("bad frame MAC")
            self._received = seq
            return aiohttp.WSMessage(WSMsgType.TEXT, payload, None)
        data = msg.data
        if len(data) < _SEQ.size + MAC_BYTES:
            raise ValueError("malformed frame")
        (got,) = _SEQ.unpack_from(data)
        if got != seq:
            raise ValueError("frame out of sequence")
        payload = data[_SEQ.size + MAC_BYTES:]
        if not hmac.compare_digest(data[_SEQ.size:_SEQ.size + MAC_BYTES],
                                   self._mac(self._in, b"b", seq, payload)):
            raise ValueError("bad frame MAC")
        self._received = seq
        return aiohttp.WSMessage(WSMsgType.BINARY, payload, None)

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:
        """The next data frame, checked; a failed one closes the socket and reads as CLOSED."""
        if self.refused is not None:
            return _CLOSED
        msg = await self.ws.receive(timeout=timeout)
        if self._key is None or msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return msg
        await self._check_secret()
        if self.refused is not None:
            return _CLOSED
        try:
            return self._open(msg)
        except ValueError as exc:
            self.refused = str(exc)
            log.warning("closed %s: %s", self.what, exc)
            await self.ws.close(code=CLOSE_POLICY, message=b"bad frame")
            return _CLOSED

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> aiohttp.WSMessage:
        msg = await self.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            raise StopAsyncIteration
        return msg

    # -- the socket -----------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return bool(self.ws.closed)

    def exception(self) -> BaseException | None:
        return self.ws.exception()  # type: ignore[no-any-return]

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        return bool(await self.ws.close(code=code, message=message))

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


HEADER_CHANNEL = "X-Geryon-Channel"
"""On the 101 answer to an upgrade: the server's fresh nonce and its proof (`NONCE PROOF`)."""


async def accept(request: web.Request, ws: web.WebSocketResponse, secret: bytes | None,
                 identity: ServerIdentity, *, what: str = "",
                 timeout: float = DEFAULT_HANDSHAKE_TIMEOUT) -> Channel:
    """Prepare `ws` for `request`, the server's nonce and proof in the 101 answer's headers.

    The frame key is derived from the secret the upgrade request was signed with (left on
    the request by `registry.auth.auth_middleware`: the previous secret during a rotation's
    grace), else from `secret`'s newest. The client proves it holds the key with its first
    frame's MAC (a frame that fails closes the socket, logged), as its signed upgrade proved
    it holds the secret: no round trip is spent on a proof of its own.

    Raises:
        ChannelRefused: never since the handshake rides on the upgrade (kept for callers).
    """
    what = what or f"{request.path} from {request.remote}"
    if secret is None:
        await ws.prepare(request)
        return Channel(ws, None, client=False, what=what)
    server_nonce = secrets.token_hex(16)
    given, secret = secret, request.get(REQUEST_SECRET) or signing_secret(secret)
    key = _key(secret, identity, request.headers.get(HEADER_NONCE, ""), server_nonce)
    ws.headers[HEADER_CHANNEL] = f"{server_nonce} {_proof(key, b'server')}"
    await ws.prepare(request)
    used = secret
    return Channel(ws, key, client=False, what=what,
                   retired=lambda: used not in accepted_secrets(given, time.time()))


async def join(ws: aiohttp.ClientWebSocketResponse, secret: bytes | None, identity: ServerIdentity,
               client_nonce: str, *, what: str = "",
               timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
               headers: Any = None) -> Channel:
    """The client's half of the handshake on a freshly opened socket: check the server's proof
    in the 101 answer's headers (`headers`, default: those `ws` was opened with); `secret` is
    the one the upgrade request was signed with.

    Raises:
        ChannelRefused: the server did not prove it holds the secret (the socket is closed).
    """
    what = what or f"connection to {identity.server}"
    if secret is None:
        return Channel(ws, None, client=True, what=what)
    if headers is None:
        response = getattr(ws, "_response", None)        # aiohttp keeps the 101 answer there
        headers = response.headers if response is not None else {}
    nonce, _, proof = str(headers.get(HEADER_CHANNEL, "")).partition(" ")
    key = _key(secret, identity, client_nonce, nonce[:128])
    if not (nonce and hmac.compare_digest(proof, _proof(key, b"server"))):
        log.warning("closed %s: the server failed the handshake", what)
        await ws.close(code=CLOSE_POLICY, message=b"bad handshake")
        raise ChannelRefused(f"{what}: the server failed the handshake (check the cluster secret)")
    return Channel(ws, key, client=True, what=what)


__all__ = ["Channel", "ChannelRefused", "accept", "join", "DEFAULT_HANDSHAKE_TIMEOUT", "HEADER_CHANNEL"]
