"""Request bodies read with a bound: a body larger than its route allows is never held whole.

Not here: authenticating the request (`registry.auth`), what the bytes are for.
"""
from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger(__name__)


async def read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The request's body, or None when it is longer than `limit` bytes (read no further)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    parts: list[bytes] = []
    size = 0
    async for block in request.content.iter_chunked(1 << 20):
        size += len(block)
        if size > limit:
            return None
        parts.append(block)
    if not parts and request.body_exists:    # read already (a middleware checked its digest)
        body = await request.read()
        return body if len(body) <= limit else None
    return b"".join(parts)
