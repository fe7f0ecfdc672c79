"""A run's disks, "mounted" without FUSE: one directory `$n` holding an entry per disk.

A chunk of this node is a symlink to the chunk itself; a chunk of another node is a
read-only copy fetched whole (one tar stream, signed) before the command starts; the
output disk (`$cpudisk`) must be on this node, else the run gets a directory of its own
under the work directory; `$n/client` is the cached export. `remove_run_dir` removes a
run's directory, read-only copies included.

Not here: the routes, the exports' cache, running the command (`geryon.node.cpuservice`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from geryon.disks.outputs import OUTPUT_CHUNK
from geryon.errors import GeryonError
from geryon.node.chunkservice import ServedChunk
from geryon.records.untar import UnpackLimits, extract
from geryon.net.aio import node_http
from registry.signer import Signer

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,127}\Z")


class RunRefused(GeryonError):
    """A run request cannot be served (bad disk name, unknown export, ...)."""


def _read_only(root: str) -> None:
    for dirpath, dirs, files in os.walk(root):
        for name in files + dirs:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    os.chmod(root, os.stat(root).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _writable_again(root: str) -> None:
    """Undo `_read_only` so the run directory can be removed."""
    for dirpath, dirs, _files in os.walk(root):
        os.chmod(dirpath, os.stat(dirpath).st_mode | stat.S_IWUSR)


def _extract_file(path: str, dest: str) -> None:
    """A copied chunk (from another node of the cluster): safe members, no size limit."""
    extract(path, dest, UnpackLimits(max_bytes=None, max_members=None, symlinks=True))


class RunMounts:
    """Mounts the disks of runs on node `node`.

    Args:
        node: this node's name.
        chunks: the chunks served here, by name.
        self_url: this node's `http://addr:port`, to recognise its own chunks in URLs.
        signer: signs requests to other nodes when copying their chunks.
        work_dir: where runs without an output disk here get a directory of their own.
        export_dir: the directory of a cached export, by its hash (raises RunRefused).
    """

    def __init__(self, node: str, chunks: dict[str, ServedChunk], self_url: str, signer: Signer, work_dir: str,
                 export_dir: Callable[[str], str]) -> None:
        self.node, self.chunks, self.self_url, self.signer = node, chunks, self_url, signer
        self.work_dir = work_dir
        self._export_dir = export_dir
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the HTTP client; idempotent."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _local_chunk(self, url: str) -> ServedChunk | None:
        from geryon.disks.remote import parse_node_url
        node, chunk = parse_node_url(url)
        if node == self.self_url:
            return self.chunks.get(chunk)
        return None

    async def _fetch(self, url: str, dest: str) -> None:
        """Copy a chunk of another node into `dest` (one tar stream), read-only."""
        from geryon.disks.remote import parse_node_url
        node, chunk = parse_node_url(url)
        path = f"/v1/chunks/{chunk}/archive"
        if self._http is None:
            self._http = node_http(total=600)
        spool = dest + ".tar"
        try:
            async with await self.signer.send(self._http, "GET", node, path) as resp:
                if resp.status != 200:
                    raise RunRefused(f"{url}: {(await resp.read())[:200].decode(errors='replace')}")
                with open(spool, "wb") as f:            # spooled to disk: a chunk may be large
                    async for block in resp.content.iter_chunked(1 << 20):
                        f.write(block)
        except (aiohttp.ClientError, OSError) as exc:
            raise RunRefused(f"{url}: node unreachable: {exc}") from exc
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, _extract_file, spool, dest)
        finally:
            os.unlink(spool)
        await loop.run_in_executor(None, _read_only, dest)

    async def mount(self, spec: dict[str, Any], ns: str) -> dict[str, str]:
        """Fill the run's directory `ns` with the disks `spec` names; the run's environment ($n,
        $cpudisk, $client, $GERYON_NODE).

        Raises:
            RunRefused: a bad disk name, an output disk not here, an export not uploaded, a node
                that cannot be reached.
        """
        env = {"n": ns, "GERYON_NODE": self.node}
        disks = list(spec.get("disks") or [])
        cpudisk = spec.get("cpudisk")
        for disk in disks + ([cpudisk] if cpudisk else []):
            name, url = str(disk.get("name", "")), str(disk.get("url", ""))
            if not _SAFE_NAME.match(name) or name == "client":
                raise RunRefused(f"bad disk name {name[:80]!r}")
            where = os.path.join(ns, name)
            if os.path.lexists(where):
                continue
            local = self._local_chunk(url)
            if local is not None:
                os.symlink(local.fs.root_path, where)
            elif disk is cpudisk:
                raise RunRefused(f"output disk {name} is not on {self.node}")
            else:
                await self._fetch(url, where)
        if cpudisk:
            env["cpudisk"] = str(cpudisk["name"])
        else:
            # No `*.cpu` disk on this host: a directory of its own under the work directory
            # (never the root filesystem: `> $cpudisk/out.txt` must not write `/out.txt`),
            # kept after the run and readable as geryon://NODE/_output/rcpu-.../
            out = os.path.join(self.work_dir, "output", f"rcpu-{time.strftime('%Y%m%d-%H%M%S')}-"
                                                        f"{secrets.token_hex(3)}")
            os.makedirs(out)
            os.symlink(out, os.path.join(ns, OUTPUT_CHUNK))
            env["cpudisk"] = OUTPUT_CHUNK
            env["GERYON_CPUDISK_DIR"] = out
        # `$n/$cpudisk/f` and `$cpudisk/f` (from the run's directory) name the same place
        beside = os.path.join(os.path.dirname(ns), env["cpudisk"])
        if not os.path.lexists(beside):
            os.symlink(os.path.join(ns, env["cpudisk"]), beside)
        if spec.get("export"):
            src = self._export_dir(str(spec["export"]))
            if not os.path.isdir(src):
                raise RunRefused("export not on this node (upload it first)")
            os.symlink(src, os.path.join(ns, "client"))
            env["client"] = os.path.join(ns, "client")
        return env


def remove_run_dir(run_dir: str) -> None:
    """Remove a run's directory, its read-only copies too."""
    if os.path.isdir(run_dir):
        _writable_again(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
