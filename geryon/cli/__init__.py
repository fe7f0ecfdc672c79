"""The `geryon` command: a thin click shell over the library.

Each sub-module exposes `commands`, a list of click commands; the group here imports a
sub-module only when one of its commands runs (or help lists them all), so `geryon load`
starts without the engine the `mapreduce` verb needs. `COMMANDS` says which module holds
which verb (tests/test_cli_lazy.py keeps it equal to the modules' lists).
Only modules in this package import click or read the environment.
"""
from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

COMMANDS: dict[str, tuple[str, ...]] = {
    "mapreduce": ("mapreduce",),
    "jobs": ("jobs", "logs", "rm"),
    "disk": ("disk",),
    "data": ("load",),
    "ndb": ("ndb",),
    "node": ("node", "rcpu", "dsh", "loads", "ls", "cat", "cp"),
    "taskfs": ("exec", "status", "taskfs"),
    "shell": ("intermediate", "agg", "idx"),
    "init": ("init",),
    "registry": ("registry", "register", "regquery", "services", "watch", "unregister"),
    "ui": ("ui",),
}
"""Module of `geryon.cli` -> the commands its `commands` list holds, in help order."""

_MODULE_OF = {name: module for module, names in COMMANDS.items() for name in names}


class _LazyGroup(click.Group):
    """A click group whose commands are imported from their module when first wanted."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(_MODULE_OF) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _MODULE_OF:
            module: Any = importlib.import_module(f"geryon.cli.{_MODULE_OF[cmd_name]}")
            for command in module.commands:
                self.commands.setdefault(command.name, command)
        return self.commands.get(cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="geryon")
def main(verbose: int) -> None:
    """Geryon: MapReduce for small clusters."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="geryon: %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
