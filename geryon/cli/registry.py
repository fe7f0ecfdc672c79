"""CLI verbs: registry serve, register, regquery, services, watch, unregister (init: `geryon.cli.init`).

A thin shell over `registry`: read options and the environment (GERYON_REGISTRY,
GERYON_SECRET_FILE, GERYON_MDNS_INTERFACES, GERYON_OWNER, XDG_CONFIG_HOME), build a
client or server, call it, and turn RegistryError into one line and exit status 1.
Output follows Inferno: `regquery` prints `name attr val ...` lines, `-n` bare names.
"""
from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from registry.client import RegistryClient

# aiohttp and zeroconf (registry.client, .server, .auth) load only when a registry verb
# runs, so that every other `geryon` command starts quickly.
from geryon.cli.common import (ENV_OWNER, ENV_SECRET_FILE, cluster_secret, default_owner,  # noqa: F401 - re-exported
                               default_secret_path, mdns_interfaces, mdns_option, registry_client, registry_option,
                               secret_option, serve_until_signalled, tls_files, tls_options)
from geryon.defaults import DEFAULT_UI_LISTEN as _UI_LISTEN
from geryon.cluster.where import ENV_MDNS_INTERFACES, ENV_REGISTRY  # noqa: F401 - re-exported
from registry.defaults import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_PORT
from registry.errors import RegistryError
from registry.store import DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT
from registry.text import pairs_of

log = logging.getLogger(__name__)

def _translating(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RegistryError as exc:
            raise click.ClickException(str(exc)) from exc
    return wrapper


_secret_option = secret_option


def _client_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = registry_option(fn)
    fn = click.option("--owner", envvar=ENV_OWNER, default=default_owner, show_default="user name",
                      help="Owner of registered services.")(fn)
    return _secret_option(fn)


def _client(registry_url: str | None, secret_file: str | None, owner: str) -> RegistryClient:
    client: RegistryClient = registry_client(registry_url, cluster_secret(secret_file), owner)
    return client


def _wait_for_signal() -> int:
    """Block until SIGINT/SIGTERM/SIGHUP; return the signal number."""
    got: list[int] = []
    done = threading.Event()

    def handler(signum: int, frame: object) -> None:
        got.append(signum)
        done.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while not done.wait(0.5):
            pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return got[0]


@click.group("registry")
def registry_group() -> None:
    """The service registry."""


@registry_group.command("serve")
@click.option("--listen", default=None, metavar="HOST:PORT",
              help=f"Address to listen on (default 0.0.0.0:{DEFAULT_PORT}).")
@click.option("--state", type=click.Path(dir_okay=False), help="Keep persist entries in FILE.")
@click.option("--ndb", "ndb_path", type=click.Path(dir_okay=False),
              help="The cluster's disk names: `geryon load --cluster` names its disks here, jobs look them up "
                   "[$GERYON_NDB, else cluster.ndb beside the default secret: ~/.config/geryon/cluster.ndb].")
@click.option("--no-mdns", is_flag=True, help="Do not advertise over zeroconf.")
@click.option("--heartbeat", type=float, default=DEFAULT_HEARTBEAT, show_default=True,
              help="Seconds between registrants' heartbeats.")
@click.option("--dead-after", type=float, default=DEFAULT_DEAD_AFTER, show_default=True,
              help="Seconds of silence after which a registrant is dead.")
@click.option("--max-connections", type=click.IntRange(1), default=DEFAULT_MAX_CONNECTIONS,
              show_default=True, help="Most open connections.")
@click.option("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT, show_default=True,
              help="Seconds a connection may take to send a request, or stay idle.")
@click.option("--ui", "with_ui", is_flag=True, help="Also serve the web dashboard (see `geryon ui`).")
@click.option("--ui-listen", default=_UI_LISTEN, show_default=True, metavar="HOST:PORT",
              help="Where --ui serves the dashboard.")
@_secret_option
@tls_options
@mdns_option
@_translating
def serve_command(listen: str | None, state: str | None, ndb_path: str | None, no_mdns: bool,
                  heartbeat: float, dead_after: float, max_connections: int, idle_timeout: float,
                  with_ui: bool, ui_listen: str,
                  secret_file: str | None, tls_cert: str | None, tls_key: str | None, tls_ca: str | None) -> None:
    """Run the registry."""
    secret = cluster_secret(secret_file, serving="registry")
    tls = tls_files(tls_cert, tls_key, tls_ca, serving="registry")
    host, _, port = (listen or f"0.0.0.0:{DEFAULT_PORT}").rpartition(":")
    if not port.isdigit():
        raise click.BadParameter(f"{listen!r} is not HOST:PORT", param_hint="--listen")
    host = host.strip("[]") or "0.0.0.0"
    from geryon.cli.common import default_cluster_ndb
    from registry.server import ServerConfig, serve

    ndb_path = ndb_path or str(default_cluster_ndb())
    click.echo(f"geryon: registry: disks named in {os.path.abspath(ndb_path)}", err=True)

    config = ServerConfig(host=host, port=int(port), secret=secret,
                          state_path=Path(state) if state else None,
                          ndb_path=Path(os.path.abspath(ndb_path)), mdns=not no_mdns,
                          mdns_interfaces=mdns_interfaces(),
                          heartbeat=heartbeat, dead_after=dead_after,
                          max_connections=max_connections, idle_timeout=idle_timeout, tls=tls)

    try:
        if with_ui:
            from geryon.cli.jobs import jobs_dir
            from geryon.cli.ui import serve_registry_with_ui, ui_config

            dashboard = ui_config(secret, jobs_dir(None), ui_listen, "--ui-listen")
            serve_until_signalled(lambda cfg, stop: serve_registry_with_ui(cfg, dashboard, stop), config)
        else:
            serve_until_signalled(serve, config)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


class _CommandAfterDashes(click.Command):
    """Keeps everything after the first `--` as the command to run (grid/register)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            ctx.meta["geryon.command"] = args[i + 1:]
            args = args[:i]
        return super().parse_args(ctx, args)


_ARGS_MAY_BEGIN_WITH_DASH = {"ignore_unknown_options": True}   # `load -1` is a value


@click.command("register", cls=_CommandAfterDashes, context_settings=_ARGS_MAY_BEGIN_WITH_DASH)
@click.option("--persist", is_flag=True, help="Keep the entry after this process ends.")
@click.argument("name")
@click.argument("attrs", nargs=-1, type=click.UNPROCESSED)
@_client_options
@click.pass_context
@_translating
def register(ctx: click.Context, persist: bool, name: str, attrs: tuple[str, ...], **opts: Any) -> None:
    """Register NAME [ATTR VAL]... while CMD runs (after --), or until interrupted."""
    pairs = pairs_of(attrs)
    if persist:
        pairs += (("persist", "1"),)
    command: list[str] = ctx.meta.get("geryon.command", [])
    with _client(**opts) as client:
        client.register(name, pairs)
        if not command:
            click.echo(f"registered {name}")
            sys.stdout.flush()
            _wait_for_signal()
            return
        proc = subprocess.Popen(command)
        forward = {s: signal.signal(s, lambda signum, frame: proc.send_signal(signum))
                   for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            status = proc.wait()
        finally:
            for s, h in forward.items():
                signal.signal(s, h)
    ctx.exit(status if status >= 0 else 128 - status)


@click.command("regquery", context_settings=_ARGS_MAY_BEGIN_WITH_DASH)
@click.option("-n", "names_only", is_flag=True, help="Print service names only.")
@click.argument("query", nargs=-1, type=click.UNPROCESSED)
@_client_options
@_translating
def regquery(names_only: bool, query: tuple[str, ...], **opts: Any) -> None:
    """Print services matching every ATTR VAL (VAL `*`: attribute present)."""
    pairs = pairs_of(query)
    with _client(**opts) as client:
        services = client.find(pairs)
    for s in services:
        click.echo(s.name if names_only else s.line())


@click.command("services")
@_client_options
@_translating
def services(**opts: Any) -> None:
    """Print every service (the registry's index)."""
    with _client(**opts) as client:
        for s in client.index():
            click.echo(s.line())


@click.command("watch")
@click.option("--initial", is_flag=True, help="First print every current service as an add.")
@_client_options
@_translating
def watch(initial: bool, **opts: Any) -> None:
    """Print changes as they happen: `add|update|remove name attr val ...`."""
    with _client(**opts) as client, client.watch(initial=initial) as events:
        try:
            for event in events:
                click.echo(event.line())
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass


@click.command("unregister")
@click.argument("name")
@_client_options
@_translating
def unregister(name: str, **opts: Any) -> None:
    """Remove a service you own."""
    with _client(**opts) as client:
        client.unregister(name)


_CLIENT_COMMANDS = [register, regquery, services, watch, unregister]
for _command in _CLIENT_COMMANDS:
    registry_group.add_command(_command)

commands: list[click.Command] = [registry_group, *_CLIENT_COMMANDS]
