"""The `geryon` command: a thin click shell over the library.

Each sub-module exposes `commands`, a list of click commands added to the group here.
Only modules in this package import click or read the environment.
"""
from __future__ import annotations

import logging
import sys

import click

from geryon.cli import mapreduce as _mapreduce
from geryon.cli import data as _data
from geryon.cli import init as _init
from geryon.cli import disk as _disk
from geryon.cli import ndb as _ndb
from geryon.cli import node as _node
from geryon.cli import registry as _registry
from geryon.cli import shell as _shell
from geryon.cli import jobs as _jobs
from geryon.cli import taskfs as _taskfs
from geryon.cli import ui as _ui

_MODULES = [_mapreduce, _jobs, _disk, _data, _ndb, _node, _taskfs, _shell, _init, _registry, _ui]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="geryon")
def main(verbose: int) -> None:
    """Geryon: MapReduce for small clusters."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="geryon: %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


for _module in _MODULES:
    for _command in _module.commands:
        main.add_command(_command)
