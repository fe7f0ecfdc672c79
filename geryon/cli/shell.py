"""CLI verbs for the seed's Unix filters: `intermediate`, `agg`, `idx`.

Each reads stdin and writes stdout as bytes, so it works in any pipe. When the reader
downstream goes away (`geryon idx | head`), the verb stops quietly with status 0, as
Unix filters killed by SIGPIPE appear to a shell pipeline. Filter errors are one line
on stderr and status 1; usage errors are click's status 2.
"""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from typing import BinaryIO, Iterator

import click

from shell.agg import aggregate
from shell.errors import ShellError
from shell.idx import index, index_paths
from shell.intermediate import write_partitions

log = logging.getLogger(__name__)


@contextmanager
def _filter_errors(name: str) -> Iterator[None]:
    """Turn ShellError into a one-line click error; treat a closed stdout as success."""
    try:
        yield
        sys.stdout.flush()  # surface a broken pipe here, not at interpreter exit
    except BrokenPipeError:
        _detach_stdout()
        log.debug("%s: downstream closed its end of the pipe", name)
    except ShellError as exc:
        raise click.ClickException(str(exc)) from exc


def _detach_stdout() -> None:
    """Point fd 1 at /dev/null so the exit-time flush of stdout cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):
        return  # not a real file (CliRunner): nothing will be flushed to a pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _stdin() -> BinaryIO:
    """The binary stdin (click's get_binary_stream is deprecated in click 8.5)."""
    return sys.stdin.buffer


def _stdout() -> BinaryIO:
    """The binary stdout; flushing the text layer first keeps output in order."""
    sys.stdout.flush()
    return sys.stdout.buffer


def _lines(n: int) -> str:
    return f"{n} line" if n == 1 else f"{n} lines"


@click.command("intermediate")
@click.argument("n", type=click.IntRange(min=1), metavar="N")
@click.argument("prefix", metavar="PREFIX")
def intermediate_cmd(n: int, prefix: str) -> None:
    """Split `key value` lines on stdin into files PREFIX0 .. PREFIX<N-1>.

    A line goes to PREFIX<h>, h = Geryon's hash of its key mod N (the seed's exact
    partitioning). All N files are created, even empty ones. Lines without exactly two
    fields are dropped and counted on stderr.
    """
    with _filter_errors("intermediate"):
        result = write_partitions(_stdin(), n, prefix)
        if result.dropped:
            click.echo(f"intermediate: dropped {_lines(result.dropped)}", err=True)


@click.command("agg")
def agg_cmd() -> None:
    """Sum sorted `key count` lines on stdin: print `key total` per run of a key.

    Lines without exactly two fields are skipped and counted on stderr; a count that
    is not an integer is an error naming the line.
    """
    with _filter_errors("agg"):
        out = _stdout()
        aggregator = aggregate(_stdin(), out)
        out.flush()
        if aggregator.dropped:
            click.echo(f"agg: dropped {_lines(aggregator.dropped)}", err=True)


@click.command("idx")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=True, allow_dash=True), metavar="[FILE]...")
def idx_cmd(files: tuple[str, ...]) -> None:
    """Print `word 1` for each word of the FILEs, or of stdin (Geryon's word-count mapper).

    Words are runs of [a-zA-Z0-9_], lower-cased; a word never spans two files. A FILE
    that cannot be read is reported and skipped, and the status is 1 (as cat does).
    Use `geryon idx | sort | geryon agg`.
    """
    failed: list[str] = []
    with _filter_errors("idx"):
        out = _stdout()
        if files:
            _, failed = index_paths(files, out, _stdin())
        else:
            index(_stdin(), out)
        out.flush()
    for line in failed:
        click.echo(f"idx: {line}", err=True)
    if failed:
        sys.exit(1)


commands: list[click.Command] = [intermediate_cmd, agg_cmd, idx_cmd]
