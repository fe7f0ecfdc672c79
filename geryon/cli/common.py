"""Pieces shared by the CLI verbs: failing with one line, sizes, the ndb option, the secret.

Not here: any verb's own logic; the secret file's format and rules (`registry.secretfile`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from geryon.chunk import parse_size

log = logging.getLogger(__name__)

ENV_SECRET_FILE = "GERYON_SECRET_FILE"
SECRET_HELP = ("Cluster secret [$GERYON_SECRET_FILE, else $XDG_CONFIG_HOME/geryon/secret or "
               "~/.config/geryon/secret, created on first use].")


def default_secret_path() -> Path:
    """The default secret file for this user (`registry.secretfile.default_secret_path`)."""
    from registry.secretfile import default_secret_path as rule

    return rule(os.environ)


def secret_option(f: Any) -> Any:
    """--secret-file FILE (or $GERYON_SECRET_FILE)."""
    return click.option("--secret-file", envvar=ENV_SECRET_FILE, metavar="FILE", help=SECRET_HELP)(f)


def cluster_secret(secret_file: str | None, *, serving: str | None = None) -> bytes:
    """The cluster secret every server requires and every client signs with.

    A named file (--secret-file, $GERYON_SECRET_FILE) must exist; with none named, the
    default file is used and created on first use (mode 0600). A server (`serving` names
    it) says once on stderr where its secret is.

    Raises:
        RegistryError: unreadable or unsafe secret file.
    """
    from registry.secretfile import ensure_secret, load_secret

    if secret_file:
        path, secret, created = Path(secret_file), load_secret(Path(secret_file)), False
    else:
        path = default_secret_path()
        secret, created = ensure_secret(path)
    if serving is not None:
        how = "created now; copy it (mode 0600) to every machine of the cluster" if created else "mode 0600"
        click.echo(f"geryon: {serving}: cluster secret {path} ({how})", err=True)
    elif created:
        log.warning("created a new cluster secret %s: to join a cluster, copy its secret there", path)
    return secret


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
