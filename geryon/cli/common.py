"""Pieces shared by the CLI verbs: failing with one line, sizes, the ndb option."""
from __future__ import annotations

import os
import sys
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
