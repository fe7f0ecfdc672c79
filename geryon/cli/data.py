"""CLI verbs: geryon load SRC... --app NAME; geryon check DISK... (local mode)."""
from __future__ import annotations

import logging
import os
import sys

import click

from geryon.checksum import check_disk
from geryon.chunk import DEFAULT_CAPACITY
from geryon.cli.common import ndb_option, showing, size_type
from geryon.errors import GeryonError
from geryon.load import DEFAULT_DISK_DIR, load as load_sources
from geryon.pieces import FORMATS

log = logging.getLogger(__name__)


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
              help="Copies of each chunk, the master included (extra copies go to DIR/replicas).")
@click.option("--to", "to", type=click.Path(file_okay=False), default=DEFAULT_DISK_DIR, show_default=True,
              help="Directory the chunk disks are made in.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="How files are cut into records: by extension, or lines, file, mbox, tar, warc.")
@ndb_option
@click.option("-q", "--quiet", is_flag=True, help="No progress.")
def load(sources: tuple[str, ...], app: str, chunk: int, replicas: int, to: str, fmt: str,
         ndb_file: str | None, quiet: bool) -> None:
    """Load SRC files and directories into chunk disks at record boundaries.

    Text is cut at lines, mbox files at messages, tar archives (any compression) at
    members, WARC files at records, directories at files; .gz/.bz2/.xz/.zst files are
    decompressed. The disks are named in the ndb file and printed, one per line.
    """
    progress = None if quiet else (_RichProgress() if sys.stderr.isatty() else _LineProgress())
    with showing(progress, "nothing loaded", errors=(OSError,)):
        report = load_sources(list(sources), app, chunk_size=chunk, replicas=replicas, to=to,
                              ndb_file=ndb_file, fmt=fmt, progress=progress)
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
def check(disks: tuple[str, ...], ndb_file: str | None) -> None:
    """Verify every file of each DISK against its checksum manifest; exit 1 if any is damaged.

    A DISK is a directory or a disk name from the ndb file. Damaged files are printed
    one per line as `DISK:PATH: what is wrong`.
    """
    from geryon.disks import resolve

    damaged = 0
    for arg in disks:
        try:
            disk = resolve(arg, ndb_file)
            assert disk.path is not None
            report = check_disk(disk.path)
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


commands: list[click.Command] = [load]  # `check` lives under `geryon disk` (cli/disk.py)
