"""CLI verbs: ndb query, Inferno's ndb/query(8) over a Geryon ndb file.

A thin shell: parse arguments, open the database, print what ndb/query prints, and turn
an NdbError into one `geryon: ...` line with exit status 1. No ndb logic lives here.
"""
from __future__ import annotations

import logging
import sys

import click

import ndb
from geryon.defaults import DEFAULT_NDB

log = logging.getLogger(__name__)

NO_MATCH_STATUS = 1
"""Exit status when nothing matches. Inferno's query prints nothing and exits 0; Geryon
exits 1, like grep, so scripts can test for a match."""


@click.group("ndb")
def ndb_group() -> None:
    """Inferno ndb(6) attribute databases."""


@ndb_group.command("query")
@click.option("-a", "all_", is_flag=True, help="Print every match, not only the first.")
@click.option(
    "-f",
    "dbfile",
    metavar="FILE",
    envvar="GERYON_NDB",
    default=DEFAULT_NDB,
    show_default=f"$GERYON_NDB, else {DEFAULT_NDB}",
    help="The database's first file.",
)
@click.argument("attr")
@click.argument("value", required=False)
@click.argument("rattr", required=False)
def query(all_: bool, dbfile: str, attr: str, value: str | None, rattr: str | None) -> None:
    """Look up ATTR[=VALUE] in an ndb database, as Inferno's ndb/query does.

    \b
    ATTR                 the first entry holding ATTR
    ATTR VALUE           the first entry holding ATTR=VALUE ('' is the empty value)
    ATTR VALUE RATTR     the first value of RATTR in such an entry, preferring one on
                         the same line as ATTR=VALUE
    With -a, every match. Exit status 1, and no output, when nothing matches.
    """
    try:
        db = ndb.open(dbfile)
        if rattr is not None:
            # query(8) takes RATTR only after a VALUE, so value is set here.
            lines = [ndb.quote(v) for v in db.query(attr, value or "", rattr)]
        else:
            lines = [ndb.format_line(e) for e in db.find(attr, value)]
    except ndb.NdbError as exc:
        click.echo(f"geryon: {exc}", err=True)
        sys.exit(1)
    if not lines:
        sys.exit(NO_MATCH_STATUS)
    for line in lines if all_ else lines[:1]:
        click.echo(line)


commands: list[click.Command] = [ndb_group]
