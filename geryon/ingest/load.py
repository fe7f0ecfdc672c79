"""Loading: pack sources into chunk disks at record boundaries and name them in ndb.

`load(sources, app, ...)` cuts every source into records (`pieces`), packs them in order
into chunk disks `d0.APP`, `d1.APP`, ... of at most `chunk_size` data bytes, never splitting
a record, records every file's checksums in each chunk's manifest (`checksum`), copies
each chunk to its replicas, and names the disks in the ndb file (`diskdb`), with the record
format they hold (`format=mbox`: the reader a job uses on them unless told otherwise). Chunks are
built under a hidden staging directory and moved into place only when the whole load has
succeeded; the app's disks from an earlier load are then replaced. The staging
directory is owned (`geryon.ingest.staging`): a load killed with kill -9 leaves it, and the next
load sweeps it.

`load_cluster` packs the same way into a local staging directory, then places each chunk's
K copies on the cluster (`allocate`: nodes' free chunks and pools, most room first, copies
on distinct hosts) when its first file is packed, uploads the master copy while the chunk
is being packed (`upload.ChunkUpload`: batches of small files, sent from memory, never
staged on this machine; its node records each file's
checksums as it is written, and the result is compared with the staged manifest), fills the
replicas from the master node to node (`replicate.sync_chunk`), and names every copy in the
cluster's ndb file — the registry's, sent over the wire, or a local file it is given —
(`master=NODE!CHUNK`, no `path=`). Every chunk it claims is leased from its node until
the load is done (`allocate.Allocator`): a killed load's chunks go back when the lease
runs out. On any failure every chunk it claimed is emptied or
deleted and the ndb file is untouched; chunks of the app's earlier load are emptied (they
become free chunks) only once the new disks are named.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from geryon.disks.chunk import TEMP_MARK
from geryon.disks.diskdb import DiskEntry, app_disk_pattern, replace_disks
from geryon.disks.resolve import DEFAULT_NDB
from geryon.errors import GeryonError
from geryon.ingest.packer import ChunkPacker, LoadedDisk, RecordTooLarge
from geryon.ingest.pieces import iter_pieces, records_of
from geryon.disks.placement import ChunkSlot, place
from geryon.ingest.staging import OwnedDir, sweep
from geryon.defaults import DEFAULT_CHUNK_SIZE, DEFAULT_DISK_DIR

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_CHUNK_SIZE", "DEFAULT_DISK_DIR", "LoadProgress", "LoadReport", "LoadedDisk", "RecordTooLarge",
           "load", "load_cluster"]

REPLICA_DIR = "replicas"
"""Subdirectory of the disk directory holding replica chunks (local mode)."""

STAGING_PREFIX = f"{TEMP_MARK}load-"
"""Start of a load's staging directory's name (`<prefix><app>-<pid>-<random>`, locked by
its process: the next load sweeps those of killed loads)."""

_APP = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$")


class LoadProgress(Protocol):
    """What `load` tells whoever watches it."""

    def start(self, total: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def chunk_done(self, name: str, nbytes: int, files: int) -> None: ...


class _Silent:
    def start(self, total: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def chunk_done(self, name: str, nbytes: int, files: int) -> None:
        pass


@dataclass
class LoadReport:
    """What a load made: its disks (in order), bytes read and written, seconds taken."""

    app: str
    disks: list[LoadedDisk] = field(default_factory=list)
    replica_paths: list[str] = field(default_factory=list)
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    ndb_file: str = ""

    @property
    def mb_per_s(self) -> float:
        return self.bytes_in / 1e6 / self.seconds if self.seconds > 0 else 0.0


def check_app_name(app: str) -> str:
    if not _APP.match(app) or "/" in app:
        raise GeryonError(f"bad app name {app!r}: use letters, digits, '.', '_', '+' or '-'")
    return app


def _source_size(src: str) -> int:
    if os.path.isfile(src):
        return os.path.getsize(src)
    total = 0
    for dirpath, _dirs, files in os.walk(src):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def _free(path: str) -> int:
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe) or "."
    return shutil.disk_usage(probe).free


def load(sources: Sequence[str], app: str, chunk_size: int = DEFAULT_CHUNK_SIZE, replicas: int = 1,
         to: str = DEFAULT_DISK_DIR, ndb_file: str | None = None, fmt: str = "auto",
         progress: LoadProgress | None = None) -> LoadReport:
    """Load `sources` (files and directories) into chunk disks `dN.APP` under `to`.

    Args:
        chunk_size: most data bytes per chunk (also each chunk's capacity).
        replicas: copies of each chunk, the master included (K).
        ndb_file: the ndb file to name the disks in (default `./ndb/cluster`).
        fmt: how file sources are cut: auto (by extension), lines, file, mbox, tar, warc.
    Raises:
        RecordTooLarge: a record is larger than the chunk size (nothing is kept).
        GeryonError: a source cannot be read or is malformed (nothing is kept).
    """
    started = time.monotonic()
    _check_args(sources, app, chunk_size, replicas)
    progress = progress or _Silent()
    ndb_file = ndb_file or DEFAULT_NDB
    to = os.path.abspath(to)
    report = LoadReport(app, ndb_file=ndb_file)
    progress.start(sum(_source_size(s) for s in sources))

    def tick(n: int) -> None:
        report.bytes_in += n
        progress.advance(n)

    os.makedirs(to, exist_ok=True)
    sweep(to, STAGING_PREFIX)                 # what a killed load left here
    owned = OwnedDir.make(to, f"{STAGING_PREFIX}{app}-")
    staging = owned.path
    packer = ChunkPacker(staging, app, chunk_size)
    try:
        chunks = _pack(packer, sources, chunk_size, fmt, progress, tick, (to, ndb_file))
        report.disks, report.replica_paths = _commit(chunks, staging, to, app, replicas)
        report.bytes_out = sum(d.nbytes for d in report.disks)
        entries = []
        kind = records_of(sources, fmt)
        for d in report.disks:
            entries.append(DiskEntry(d.name, d.path, replicas=d.replicas, format=kind))
            for r in d.replicas:
                entries.append(DiskEntry(r, os.path.join(to, REPLICA_DIR, r), replica_of=d.name, format=kind))
        replace_disks(ndb_file, app_disk_pattern(app), entries)
    except BaseException:
        packer.abort()
        raise
    finally:
        owned.close()
    report.seconds = time.monotonic() - started
    log.info("loaded %d bytes into %d disks in %.2f s", report.bytes_in, len(report.disks), report.seconds)
    return report


def _check_args(sources: Sequence[str], app: str, chunk_size: int, replicas: int) -> None:
    check_app_name(app)
    if not sources:
        raise GeryonError("nothing to load: name at least one file or directory")
    if chunk_size < 1:
        raise GeryonError("the chunk size must be positive")
    if replicas < 1:
        raise GeryonError("replicas must be at least 1 (the master)")
    for src in sources:
        if not os.path.exists(src):
            raise GeryonError(f"{src}: no such file or directory")


def _pack(packer: ChunkPacker, sources: Sequence[str], chunk_size: int, fmt: str, progress: LoadProgress,
          tick: Callable[[int], None], exclude: Sequence[str]) -> list[LoadedDisk]:
    """Cut every source into pieces and pack them into staged chunks."""
    packer_done = 0
    multi = len(sources) > 1
    for src in sources:
        prefix = os.path.basename(os.path.normpath(src)) if multi and os.path.isdir(src) else ""
        for piece in iter_pieces(src, chunk_size, fmt, prefix, tick, exclude=exclude):
            packer.add(piece)
            while len(packer.chunks) > packer_done:
                c = packer.chunks[packer_done]
                progress.chunk_done(c.name, c.nbytes, c.files)
                packer_done += 1
    chunks = packer.finish()
    for c in chunks[packer_done:]:
        progress.chunk_done(c.name, c.nbytes, c.files)
    if not chunks:
        raise GeryonError("nothing to load: the sources hold no records")
    return chunks


def _commit(chunks: list[LoadedDisk], staging: str, to: str, app: str,
            replicas: int) -> tuple[list[LoadedDisk], list[str]]:
    """Copy chunks to their replicas, drop the app's old disks, move the new ones into place."""
    replica_dir = os.path.join(to, REPLICA_DIR)
    staged_replicas = os.path.join(staging, REPLICA_DIR)
    slot = [ChunkSlot("local", replica_dir, _free(replica_dir))]
    out: list[LoadedDisk] = []
    replica_paths: list[str] = []
    for c in chunks:
        names = []
        for k, _chosen in enumerate(place(c.nbytes, slot, replicas - 1), start=1):
            name = f"{c.name}.r{k}"
            shutil.copytree(c.path, os.path.join(staged_replicas, name), copy_function=shutil.copy2)
            names.append(name)
        out.append(LoadedDisk(c.name, os.path.join(to, c.name), c.nbytes, c.files, tuple(names)))
    pattern = app_disk_pattern(app)
    for base in (to, replica_dir):
        if os.path.isdir(base):
            for name in os.listdir(base):
                if pattern.match(name):
                    shutil.rmtree(os.path.join(base, name))
    for c in chunks:
        os.replace(c.path, os.path.join(to, c.name))
    if replicas > 1:
        os.makedirs(replica_dir, exist_ok=True)
        for name in sorted(os.listdir(staged_replicas)):
            os.replace(os.path.join(staged_replicas, name), os.path.join(replica_dir, name))
            replica_paths.append(os.path.join(replica_dir, name))
    return out, replica_paths



# -- on a cluster -------------------------------------------------------------------------

def load_cluster(sources: Sequence[str], app: str, *, registry: Any, secret: bytes | None,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, replicas: int = 1, ndb_file: str | None = None,
                 fmt: str = "auto", progress: LoadProgress | None = None, staging_dir: str | None = None,
                 names: Any = None, named_hook: Callable[[], None] | None = None) -> LoadReport:
    """Load `sources` into chunk disks `dN.APP` on the cluster's nodes, K copies each.

    Args:
        registry: a registry client (nodes' chunks and pools are found through it).
        secret: the cluster secret.
        staging_dir: where chunks are packed before upload (default: the system's temp dir).
        names: where the disks are named: a `diskdb.RegistryNdb` (the registry's ndb file) or
            `diskdb.NdbFile` (default: the local file `ndb_file`, else ./ndb/cluster).
        named_hook: called between naming the disks and dropping the chunks' claims (tests).
    Raises:
        NoRoom: fewer than `replicas` hosts have room for a chunk (nothing is kept).
        RecordTooLarge, GeryonError: as `load` (nothing is kept).
    """
    import tempfile

    from geryon.disks.allocate import Allocator, ChunkRef
    from geryon.disks.checksum import read_manifest
    from geryon.disks.diskdb import NdbFile
    from geryon.disks.filebatch import DEFAULT_BATCH_FILE
    from geryon.ingest.upload import ChunkUpload, Held

    started = time.monotonic()
    _check_args(sources, app, chunk_size, replicas)
    progress = progress or _Silent()
    book = names if names is not None else NdbFile(ndb_file or DEFAULT_NDB)
    report = LoadReport(app, ndb_file=book.where)
    progress.start(sum(_source_size(s) for s in sources))

    def tick(n: int) -> None:
        report.bytes_in += n
        progress.advance(n)

    pattern = app_disk_pattern(app)
    named = book.disks()
    report.ndb_file = book.where
    old = [d for d in named if pattern.match(d.name) and d.path is None]
    alloc = Allocator(registry, secret, {(d.host, d.chunk or d.name) for d in named}, lease=True)
    parent = staging_dir or tempfile.gettempdir()
    sweep(parent, STAGING_PREFIX)
    owned = OwnedDir.make(parent, f"{STAGING_PREFIX}{app}-")
    staging = owned.path
    uploads: dict[str, tuple[ChunkUpload, ChunkRef, list[ChunkRef]]] = {}
    held = Held()                             # small files in memory, not sent yet: bounded

    def start(name: str) -> tuple[ChunkUpload, ChunkRef, list[ChunkRef]]:
        # A chunk's first file claims its copies; from then on its node writes the
        # chunk's files while the next ones are packed.
        if name not in uploads:
            for upload, _, _ in uploads.values():
                upload.end()                  # packed whole: its last batch goes now
            slots = alloc.choose(chunk_size, replicas)
            master = alloc.claim(slots[0], chunk_size)
            copies = [alloc.claim(slot, chunk_size, replica=True) for slot in slots[1:]]
            uploads[name] = (ChunkUpload(master.open(secret), f"{name} ({master.where})", held=held),
                             master, copies)
        return uploads[name]

    def on_file(root: str, key: str, written: Any, data: bytes | None) -> None:
        start(os.path.basename(root))[0].add(key, os.path.join(root, key.lstrip("/")), written, data)

    packer = ChunkPacker(staging, app, chunk_size, on_file=on_file, keep_small=DEFAULT_BATCH_FILE)
    try:
        alloc.choose(chunk_size, replicas)    # no room at all: say so before packing anything
        chunks = _pack(packer, sources, chunk_size, fmt, progress, tick, book.exclude)
        kind = records_of(sources, fmt)
        entries: list[DiskEntry] = []
        for c in chunks:
            upload, master, refs = start(c.name)
            del uploads[c.name]
            upload.finish(read_manifest(c.path) or {})
            names = tuple(f"{c.name}.r{k}" for k in range(1, replicas))
            copies = []
            for name, ref in zip(names, refs):
                _fill_replica(master, ref, secret, name)
                copies.append(DiskEntry(name, None, ref.host, (), c.name, ref.chunk, kind))
            entries.append(DiskEntry(c.name, None, master.host, names, None, master.chunk, kind))
            entries += copies
            report.disks.append(LoadedDisk(c.name, master.where, c.nbytes, c.files, names))
            report.replica_paths += [f"{e.host}!{e.chunk}" for e in copies]
        report.bytes_out = sum(d.nbytes for d in report.disks)
        book.replace(pattern, entries)
    except BaseException:
        for upload, _, _ in uploads.values():
            upload.abort()
        packer.abort()
        alloc.release_all()
        alloc.close()
        owned.close()
        raise
    # Named, then the claims dropped: a load killed in between leaves claims that run out on
    # chunks the registry names, which their nodes keep (`ChunkService.reclaim`); nothing leaks.
    try:
        if named_hook is not None:
            named_hook()
        alloc.complete()
    except GeryonError as exc:
        log.warning("%s (its node keeps the chunk: it is named)", exc)
    finally:
        alloc.close()
        owned.close()
    _free_old(old, registry, secret)
    report.seconds = time.monotonic() - started
    log.info("loaded %d bytes into %d disks on the cluster in %.2f s", report.bytes_in, len(report.disks),
             report.seconds)
    return report


def _fill_replica(master: Any, ref: Any, secret: bytes | None, name: str) -> None:
    from geryon.disks.replicate import DEFAULT_SYNC_TIMEOUT, sync_chunk

    with master.open(secret) as mfs, ref.open(secret, DEFAULT_SYNC_TIMEOUT) as rfs:
        sync_chunk(mfs, rfs, label=name)


def _free_old(old: Sequence[DiskEntry], registry: Any, secret: bytes | None) -> None:
    """Empty the chunks of an app's earlier load, now unnamed, so they are free chunks again."""
    from geryon.disks.allocate import locate

    for d in old:
        ref = locate(registry, d.host, d.chunk or d.name)
        if ref is None:
            log.warning("%s: its old chunk %s is not live: left as it is", d.name, d.master)
            continue
        try:
            with ref.open(secret) as remote:
                remote.call("clear")
                remote.call("role", replica=False)
        except (GeryonError, OSError) as exc:
            log.warning("%s: could not empty its old chunk %s: %s", d.name, d.master, exc)
