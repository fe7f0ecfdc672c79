"""CLI verbs: init, registry serve, register, regquery, services, watch, unregister."""
from __future__ import annotations

import click

commands: list[click.Command] = []
