"""The job service: run MapReduce task attempts for a cluster job driver (being built)."""
from __future__ import annotations

from aiohttp import web


class JobService:
    """Routes under /v1/jobs."""

    def __init__(self, node: str, chunks: dict, self_url: str, secret: bytes | None, work_dir: str) -> None:
        self.node, self.chunks, self.self_url, self.secret, self.work_dir = node, chunks, self_url, secret, work_dir

    def routes(self) -> list[web.RouteDef]:
        return []

    async def close(self) -> None:
        pass
