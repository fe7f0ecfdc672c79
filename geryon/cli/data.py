"""CLI verbs: geryon load SRC... --app NAME [--cluster]; geryon disk check DISK...

Also the pieces the cluster's data verbs share (`cluster_options`, `cluster`): the
registry (--registry, $GERYON_REGISTRY) and the cluster secret (--secret-file,
$GERYON_SECRET_FILE, else the default secret file).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from geryon.disks.checksum import check_disk
from geryon.defaults import DEFAULT_CAPACITY, DEFAULT_DISK_DIR, DEFAULT_NDB
from geryon.cli.common import (cluster_secret, fail, local_option, ndb_option, registry_client, registry_option,
                               secret_option, showing, size_type)
from geryon.errors import GeryonError
from geryon.ingest.load import load as load_sources
from geryon.ingest.pieces import FORMATS

log = logging.getLogger(__name__)


def cluster_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--registry and --secret-file, for verbs that talk to the cluster."""
    return registry_option(secret_option(f))


def read_secret(secret_file: str | None) -> bytes:
    """The cluster secret (`geryon.cli.common.cluster_secret`)."""
    return cluster_secret(secret_file)


@contextmanager
def cluster(registry_url: str | None, secret_file: str | None) -> Iterator[tuple[Any, bytes]]:
    """A registry client and the secret; cluster errors become one line and exit 1."""
    from fs import errors as fserrors

    from registry.errors import RegistryError

    try:
        secret = read_secret(secret_file)
        with registry_client(registry_url, secret) as client:
            yield client, secret
    except (GeryonError, RegistryError, fserrors.FSError, OSError) as exc:
        fail(str(exc) or type(exc).__name__)


ENV_TEST_PAUSE_NAMED = "GERYON_TEST_PAUSE_NAMED"
"""Tests only: `load --cluster` says `named` on stderr and waits this many seconds between
naming its disks and dropping its chunks' claims (the instant a kill -9 is played at)."""


def _test_pause(var: str) -> Any:
    seconds = os.environ.get(var)
    if not seconds:
        return None

    def pause() -> None:
        click.echo("geryon: named", err=True)
        time.sleep(float(seconds))
    return pause


def ndb_path(ndb_file: str | None) -> str:
    """The local ndb file a verb reads and updates when it is named (else ./ndb/cluster)."""
    return ndb_file or DEFAULT_NDB


@contextmanager
def cluster_ndb(registry: Any, ndb_file: str | None) -> Iterator[str]:
    """The ndb file a cluster verb reads and updates: the one named (--ndb, $GERYON_NDB), else
    a copy of the registry's, written back to the registry when the verb changed it (refused,
    in one line, if another changed it meanwhile).

    Raises:
        RegistryError: the registry keeps no ndb file, or it changed meanwhile.
    """
    import tempfile

    if ndb_file:
        yield ndb_file
        return
    doc = registry.ndb()
    with tempfile.TemporaryDirectory(prefix="geryon-ndb-") as tmp:
        path = os.path.join(tmp, os.path.basename(str(doc.get("path") or "cluster.ndb")))
        with open(path, "w", encoding="utf-8") as f:
            f.write(str(doc.get("text") or ""))
        yield path
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if text != doc.get("text"):
            registry.put_ndb(text, base=str(doc.get("version") or ""))


class _LineProgress:
    """Plain lines on stderr: one per chunk made."""

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, nbytes: int) -> None:
        pass

    def chunk_done(self, name: str, nbytes: int, files: int) -> None:
        click.echo(f"geryon: made {name}: {nbytes} bytes in {files} files", err=True)

    def close(self) -> None:
        pass


class _RichProgress:
    """A byte progress bar (rich) on a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self._bar = Progress(TextColumn("load"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                             TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self._task = self._bar.add_task("load", total=None)
        self._bar.start()

    def start(self, total: int) -> None:
        self._bar.update(self._task, total=total)

    def advance(self, nbytes: int) -> None:
        self._bar.advance(self._task, nbytes)

    def chunk_done(self, name: str, nbytes: int, files: int) -> None:
        self._bar.console.print(f"made {name}: {nbytes} bytes in {files} files")

    def close(self) -> None:
        self._bar.stop()


@click.command("load")
@click.argument("sources", nargs=-1, required=True, metavar="SRC...")
@click.option("--app", required=True, help="Name of the data set: disks are d0.APP, d1.APP, ...")
@click.option("--chunk", "chunk", type=size_type, default=str(DEFAULT_CAPACITY), show_default="64M",
              help="Most data bytes per chunk disk.")
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True,
              help="Copies of each chunk, the master included (locally, extra copies go to DIR/replicas; "
                   "on a cluster, to other hosts).")
@click.option("--to", "to", type=click.Path(file_okay=False), default=None,
              help=f"Directory the chunk disks are made in [default: {DEFAULT_DISK_DIR}].")
@click.option("--cluster", "on_cluster", is_flag=True,
              help="Put the chunks on the cluster's nodes (free chunks and pools, most room first).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="How files are cut into records: by extension, or lines, file, mbox, tar, warc.")
@ndb_option
@cluster_options
@click.option("-q", "--quiet", is_flag=True, help="No progress.")
def load(sources: tuple[str, ...], app: str, chunk: int, replicas: int, to: str | None, on_cluster: bool,
         fmt: str, ndb_file: str | None, registry_url: str | None, secret_file: str | None, quiet: bool) -> None:
    """Load SRC files and directories into chunk disks at record boundaries.

    Text is cut at lines, mbox files at messages, tar archives (any compression) at
    members, WARC files at records, directories at files; .gz/.bz2/.xz/.zst files are
    decompressed. The disks are named in the ndb file and printed, one per line.
    """
    if on_cluster and to is not None:
        raise click.UsageError("--to is for local disks; --cluster puts them on the nodes")
    progress = None if quiet else (_RichProgress() if sys.stderr.isatty() else _LineProgress())
    if on_cluster:
        from geryon.ingest.load import load_cluster

        from geryon.disks.diskdb import NdbFile, RegistryNdb
        from registry.errors import RegistryError

        with cluster(registry_url, secret_file) as (registry, secret):
            # The disks are named where the registry reads them, unless a file is named here.
            names = NdbFile(ndb_file) if ndb_file else RegistryNdb(registry)
            with showing(progress, "nothing loaded", errors=(OSError, RegistryError)):
                report = load_cluster(list(sources), app, registry=registry, secret=secret, chunk_size=chunk,
                                      replicas=replicas, ndb_file=ndb_file, fmt=fmt, progress=progress,
                                      names=names, named_hook=_test_pause(ENV_TEST_PAUSE_NAMED))
    else:
        with showing(progress, "nothing loaded", errors=(OSError,)):
            report = load_sources(list(sources), app, chunk_size=chunk, replicas=replicas,
                                  to=to or DEFAULT_DISK_DIR, ndb_file=ndb_file, fmt=fmt, progress=progress)
    for d in report.disks:
        click.echo(d.name)
    if not quiet:
        secs = max(report.seconds, 1e-9)
        click.echo(f"geryon: read {report.bytes_in} bytes ({report.mb_per_s:.1f} MB/s), stored "
                   f"{report.bytes_out} bytes ({report.bytes_out / 1e6 / secs:.1f} MB/s) in {len(report.disks)} disks"
                   f"{f' ({replicas} copies each)' if replicas > 1 else ''} in {report.seconds:.2f} s; "
                   f"named in {report.ndb_file}", err=True)


@click.command("check")
@click.argument("disks", nargs=-1, required=True, metavar="DISK...")
@ndb_option
@cluster_options
@local_option
def check(disks: tuple[str, ...], ndb_file: str | None, registry_url: str | None, secret_file: str | None,
          force_local: bool = False) -> None:
    """Verify every file of each DISK against its checksum manifest; exit 1 if any is damaged.

    A DISK is a directory or a disk name: checked here when it is on this machine (and no
    registry is given), else on the cluster's nodes, master and replicas (the registry given
    or found over zeroconf; `--local` never looks). Damaged files are printed one per line as
    `DISK:PATH: what is wrong`.
    """
    from geryon.cli.common import where
    from geryon.disks.resolve import resolve
    from geryon.errors import UnknownDisk

    damaged = 0
    for arg in disks:
        is_path = os.sep in arg or os.path.isdir(arg)
        try:
            if registry_url and not force_local and not is_path:
                raise UnknownDisk(f"{arg}: on the cluster")
            disk = resolve(arg, ndb_file)
            assert disk.path is not None
            report = check_disk(disk.path)
        except UnknownDisk as exc:
            try:
                url = None if is_path else where(registry_url, secret_file, local=force_local, names_data=True,
                                                 elsewhere=str(exc)).registry
            except GeryonError as no_cluster:
                exc = no_cluster
                url = None
            if url is None:
                click.echo(str(exc) if str(exc).startswith(arg) else f"{arg}: {exc}")
                damaged += 1
            else:
                damaged += _check_on_cluster(arg, ndb_file, url, secret_file)
            continue
        except GeryonError as exc:
            click.echo(f"{arg}: {exc}")
            damaged += 1
            continue
        for path, problem in report.damaged:
            click.echo(f"{disk.name}:{path.lstrip('/')}: {problem}")
        damaged += len(report.damaged)
        if not report.has_manifest:
            click.echo(f"geryon: {disk.name}: no checksum manifest; nothing to verify", err=True)
        elif report.unrecorded:
            click.echo(f"geryon: {disk.name}: {len(report.unrecorded)} files have no recorded checksum "
                       f"(first: {report.unrecorded[0].lstrip('/')})", err=True)
        status = "ok" if report.ok else f"{len(report.damaged)} damaged"
        click.echo(f"geryon: {disk.name}: {report.verified} files verified, {status} "
                   f"({os.path.relpath(disk.path)})", err=True)
    if damaged:
        sys.exit(1)


def _check_on_cluster(arg: str, ndb_file: str | None, registry_url: str, secret_file: str | None) -> int:
    """Check every copy of a cluster disk on its node; the count of damaged files (or dead copies)."""
    from geryon.disks.failover import find_copies

    bad = 0
    with cluster(registry_url, secret_file) as (registry, secret):
        for copy in find_copies(arg, registry, secret, ndb_path(ndb_file)):
            if copy.fs is None:
                click.echo(f"{copy.name}: {copy.where}: {copy.why}")
                bad += 1
                continue
            with copy.fs:
                result = copy.fs.call("check") if hasattr(copy.fs, "call") else None
            if result is None:
                continue
            for path, problem in result["damaged"]:
                click.echo(f"{copy.name}:{path.lstrip('/')}: {problem}")
            bad += len(result["damaged"])
            status = "ok" if not result["damaged"] else f"{len(result['damaged'])} damaged"
            note = "" if result["has_manifest"] else ", no checksum manifest"
            click.echo(f"geryon: {copy.name}: {result['verified']} files verified, {status} ({copy.where}{note})",
                       err=True)
    return bad


commands: list[click.Command] = [load]  # `check` lives under `geryon disk` (cli/disk.py)
