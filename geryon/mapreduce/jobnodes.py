"""Signed requests from a job driver to node job services: packs, attempts, commits, copies.

One loop thread (`geryon.net.loop.LoopThread`) with one aiohttp session, for the driver's
synchronous code (started when first used; closed with nothing left pending). `RemoteCpu` is a node's job service as a `geryon.mapreduce.cpu.Cpu`.
Not here: deciding anything (`geryon.mapreduce.clusterdriver`, `geryon.mapreduce.engine`), or the node side
(`geryon.node.jobservice`).
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import json
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from geryon.mapreduce.attempt import FailureKind
from geryon.errors import GeryonError
from geryon.mapreduce.jobpack import JobPack
from geryon.cluster.members import ClusterCpu
from geryon.cluster.rcpu import next_after
from geryon.net.aio import UNREACHABLE, node_http
from geryon.net.loop import LoopThread
from geryon.mapreduce.task import MapTask, ReduceTask, TaskResult
from registry.signer import Signer

ALIVE_TIMEOUT = 2.0
"""Seconds a node has to answer `GET /v1/node` when the driver checks it."""

HOLD_RETRY = 1.0
"""Seconds before a driver reopens a job hold a node closed (or could not open)."""


class NodeError(GeryonError):
    """A node refused a request or could not be reached."""

    failure_kind = FailureKind.LOST   # an attempt's connection: its node died or missed its lease


class Nodes:
    """Signed requests to node daemons, made on the driver's loop."""

    def __init__(self, secret: bytes | None, lease: float) -> None:
        self.secret = secret
        self.signer = Signer(secret)
        self.lease = lease
        self._io: LoopThread | None = None
        self._http: aiohttp.ClientSession | None = None
        self._packs: dict[str, asyncio.Lock] = {}
        self._has_pack: set[tuple[str, str]] = set()
        self._holds: list[cf.Future[Any]] = []

    @property
    def io(self) -> LoopThread:
        """The driver's loop thread, with `http` on it (started when first used)."""
        if self._io is None:
            io = LoopThread("geryon-cluster", finish=self._close_http)
            self._http = io.call(self._session())
            self._io = io
        return self._io

    @property
    def http(self) -> aiohttp.ClientSession:
        """The driver's one HTTP session (on `io`)."""
        if self._http is None:
            self.io   # starts the loop and the session
        assert self._http is not None
        return self._http

    @staticmethod
    async def _session() -> aiohttp.ClientSession:
        return node_http(sock_connect=5)

    async def _close_http(self) -> None:
        if self._http is not None:
            await self._http.close()

    def close(self) -> None:
        for fut in self._holds:
            fut.cancel()
        self._holds = []
        if self._io is not None:
            self._io.close()
            self._io = None

    def hold(self, cpus: Sequence[ClusterCpu], job_id: str) -> None:
        """Hold the job open on every node (a WebSocket each, reopened if it drops): a node
        whose hold closes (this process died) removes the job's intermediate data there."""
        path = f"/v1/jobs/{job_id}/hold"

        async def one(cpu: ClusterCpu) -> None:
            while True:
                try:
                    async with await self.signer.connect(self.http, cpu.url, path,
                                                         what=f"job hold on {cpu.name}") as ws:
                        async for _ in ws:
                            pass
                except UNREACHABLE:
                    pass
                await asyncio.sleep(HOLD_RETRY)
        self._holds.extend(self.io.spawn(one(c)) for c in cpus)

    async def request(self, method: str, url: str, path: str, body: bytes = b"",
                      timeout: float = 30.0) -> tuple[int, bytes]:
        try:
            async with await self.signer.send(self.http, method, url, path, body,
                                              timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return resp.status, await resp.read()
        except UNREACHABLE as exc:
            raise NodeError(f"{url}: {type(exc).__name__}: {exc}") from exc

    def alive(self, cpu: ClusterCpu) -> bool:
        """Does the node answer now (within ALIVE_TIMEOUT)?"""
        try:
            status, _ = self.io.call(self.request("GET", cpu.url, "/v1/node", timeout=ALIVE_TIMEOUT),
                                     timeout=ALIVE_TIMEOUT + 5)
            return status == 200
        except (NodeError, cf.TimeoutError):
            return False

    async def ensure_pack(self, cpu: ClusterCpu, pack: JobPack) -> None:
        key = (cpu.url, pack.digest)
        if key in self._has_pack:
            return
        lock = self._packs.setdefault(cpu.url, asyncio.Lock())
        async with lock:
            if key in self._has_pack:
                return
            path = f"/v1/jobs/packs/{pack.digest}"
            status, _ = await self.request("GET", cpu.url, path)
            if status != 200:
                status, body = await self.request("PUT", cpu.url, path, pack.data, timeout=120)
                if status != 200:
                    raise NodeError(f"{cpu.name}: job pack refused: {body[:200].decode(errors='replace')}")
            self._has_pack.add(key)

    async def attempt(self, cpu: ClusterCpu, job_id: str, pack: JobPack, task: dict[str, Any],
                      on_stderr: Callable[[bytes], None], on_started: Callable[[], None],
                      out_chunk: str | None = None) -> TaskResult:
        """Run one attempt on `cpu`, its outputs on the chunk `out_chunk` there (None: the
        node's work directory); its result, or NodeError if the attempt was lost."""
        await self.ensure_pack(cpu, pack)
        path = "/v1/jobs/run"
        try:
            async with await self.signer.connect(self.http, cpu.url, path, what=f"job attempt on {cpu.name}",
                                                 heartbeat=self.lease / 1.5, max_msg_size=64 << 20) as ws:
                await ws.send_json({"job": job_id, "pack": pack.digest, "task": task, "out_chunk": out_chunk})
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        on_stderr(msg.data[1:])
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        data = json.loads(msg.data)
                        if data.get("op") == "started":
                            on_started()
                        elif data.get("op") == "result":
                            return TaskResult.from_json(data["result"])
                        elif data.get("op") == "error":
                            raise NodeError(f"{cpu.name} refused the task: {data.get('error')}")
                    else:
                        break
        except (*UNREACHABLE, ValueError) as exc:
            raise NodeError(f"{cpu.name}: {type(exc).__name__}: {exc}") from exc
        raise NodeError(f"{cpu.name}: connection lost (node died or missed its lease)")

    def post_json(self, cpu: ClusterCpu, path: str, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        return self.post_bytes(cpu, path, json.dumps(payload).encode(), timeout)

    def post_bytes(self, cpu: ClusterCpu, path: str, body: bytes, timeout: float = 30.0) -> dict[str, Any]:
        try:
            status, data = self.io.call(self.request("POST", cpu.url, path, body, timeout=timeout), timeout + 5)
        except cf.TimeoutError as exc:
            raise NodeError(f"{cpu.name}: no answer") from exc
        if status != 200:
            raise NodeError(f"{cpu.name}: {data[:200].decode(errors='replace')}")
        return json.loads(data)

    def download(self, cpu: ClusterCpu, path: str, dest: str, timeout: float = 600.0) -> int:
        """Copy a file the node serves at `path` into `dest`; bytes copied."""
        async def go() -> int:
            n = 0
            try:
                async with await self.signer.send(self.http, "GET", cpu.url, path,
                                                  timeout=aiohttp.ClientTimeout(total=timeout,
                                                                                sock_read=self.lease * 2)) as resp:
                    if resp.status != 200:
                        raise NodeError(f"{cpu.name}: {(await resp.read())[:200].decode(errors='replace')}")
                    with open(dest, "wb") as f:
                        async for block in resp.content.iter_chunked(1 << 20):
                            f.write(block)
                            n += len(block)
            except UNREACHABLE as exc:
                raise NodeError(f"{cpu.name}: {type(exc).__name__}: {exc}") from exc
            return n
        return self.io.call(go())  # type: ignore[no-any-return]

    def forget(self, cpus: Sequence[ClusterCpu], job_id: str) -> None:
        """Remove the job's intermediate data on every node (best effort, in parallel)."""
        async def one(cpu: ClusterCpu) -> None:
            try:
                await self.request("DELETE", cpu.url, f"/v1/jobs/{job_id}", timeout=ALIVE_TIMEOUT * 2)
            except NodeError:
                pass

        async def all_() -> None:
            await asyncio.gather(*(one(c) for c in cpus))
        try:
            self.io.call(all_(), timeout=ALIVE_TIMEOUT * 4)
        except Exception:
            pass


class RemoteCpu:
    """A node's job service as a `geryon.mapreduce.cpu.Cpu`: an attempt is one WebSocket to the node,
    the job's pack sent first if the node lacks it, its stderr streamed to `on_log`.

    Args:
        info: the cpu as the registry describes it (`geryon.cluster.members.find_cpus`).
        nodes: the driver's connection to the nodes (shared by its cpus).
        pack: the job's pack.
        out_chunks: the host's output chunks (`members.find_output_disks`), used round robin
            (rcpu's rule); none: the node's work directory.
        step: a multi-step job's step (from 0) its tasks run, of the pack's steps.
    """

    def __init__(self, info: ClusterCpu, nodes: Nodes, pack: JobPack, out_chunks: Sequence[str] = (),
                 step: int = 0) -> None:
        self.info = info
        self.name = info.name
        self.slots = info.slots
        self.url = info.url
        self.authority = info.authority
        self.load = info.load
        self.nodes = nodes
        self.pack = pack
        self.out_chunks = tuple(sorted(out_chunks))
        self.step = step
        self._last_chunk: str | None = None

    def __repr__(self) -> str:
        return f"RemoteCpu({self.name!r}, {self.url!r}, slots={self.slots})"

    def submit(self, job_id: str, task: MapTask | ReduceTask,
               on_log: Callable[[bytes], None] | None = None) -> cf.Future[TaskResult]:
        spec = task.to_json()
        if self.step:
            spec["step"] = self.step
        return self.nodes.io.spawn(self.nodes.attempt(self.info, job_id, self.pack, spec,
                                                      on_log or (lambda data: None), lambda: None,
                                                      out_chunk=self._out_chunk()))

    def _out_chunk(self) -> str | None:
        if not self.out_chunks:
            return None
        self._last_chunk = next_after(list(self.out_chunks), self._last_chunk)
        return self._last_chunk

    def alive(self) -> bool:
        """Does the node answer now?"""
        return self.nodes.alive(self.info)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        """Nothing to kill from here: a node kills an attempt whose driver went away."""
