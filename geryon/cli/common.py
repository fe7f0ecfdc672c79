"""Pieces shared by the CLI verbs: failing with one line, sizes, the ndb option."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from geryon.chunk import parse_size


def fail(message: str, status: int = 1) -> NoReturn:
    """Print `geryon: message` on stderr and exit (1 for failures; click uses 2 for usage)."""
    first, _, rest = message.partition("\n")
    click.echo(f"geryon: {first}", err=True)
    if rest:
        click.echo(rest, err=True)
    sys.exit(status)


class SizeType(click.ParamType):
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


size_type = SizeType()


def default_ndb() -> str | None:
    """The ndb file from GERYON_NDB, if set (else the library's ./ndb/cluster rule)."""
    return os.environ.get("GERYON_NDB") or None


def ndb_option(f: Any) -> Any:
    return click.option("--ndb", "ndb_file", type=click.Path(dir_okay=False), default=default_ndb,
                        help="ndb file naming disks [$GERYON_NDB, else ./ndb/cluster].")(f)


@contextmanager
def showing(progress: Any, interrupted: str, errors: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Run a long operation with a progress display that is closed on every way out.

    GeryonError (and `errors`) become one line and exit 1; Ctrl-C says `interrupted;
    <interrupted>` and exits 130.
    """
    from geryon.errors import GeryonError

    try:
        yield
    except (GeryonError, *errors) as exc:
        _close(progress)
        fail(str(exc))
    except KeyboardInterrupt:
        _close(progress)
        fail(f"interrupted; {interrupted}", status=130)
    _close(progress)


def _close(progress: Any) -> None:
    if progress is not None:
        progress.close()


def serve_until_signalled(serve: Callable[[Any, asyncio.Event], Awaitable[None]], config: Any) -> None:
    """Run an asyncio server until SIGINT or SIGTERM asks it to stop."""
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop)

    asyncio.run(main())
