"""CLI verb: geryon ui — the web dashboard (and `registry serve --ui`'s half of it).

Reads the options and the environment (the secret as every verb finds it, the registry
by the one rule of `geryon.cluster.where`, the job records' directory as `geryon jobs` finds it),
starts `geryon.ui.server.Dashboard`, and prints a one-time login URL. `--login-url URL`
prints a fresh login URL for a dashboard already running (anyone with the secret can).
Not here: the pages, the access rules (`geryon.ui`).
"""
from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import click

from geryon.cli.common import (cluster_secret, fail, registry_client, registry_option, secret_option, serve_until_signalled,
                               where)
from geryon.cli.jobs import _jobs_dir_option, jobs_dir
from geryon.errors import GeryonError
from registry.errors import RegistryError
from geryon.defaults import DEFAULT_UI_LISTEN as DEFAULT_LISTEN

log = logging.getLogger(__name__)


def parse_listen(listen: str, option: str = "--listen") -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets) -> (host, port)."""
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{listen!r} is not HOST:PORT", param_hint=option)
    return host.strip("[]") or "127.0.0.1", int(port)


def announce(dashboard: Any) -> None:
    """Say where the dashboard is and how to get in (stdout, flushed: scripts read it)."""
    click.echo(f"dashboard: listening on {dashboard.url}", err=True)
    if dashboard.config.host not in ("127.0.0.1", "::1", "localhost"):
        click.echo(f"geryon: dashboard: listening on {dashboard.config.host}, not only loopback: "
                   "anyone who can reach it sees a login refusal, and with a login token, the cluster", err=True)
    click.echo(f"dashboard: open {dashboard.login_url()}")
    sys.stdout.flush()


def ui_config(secret: bytes, jobs: str, listen: str, option: str = "--listen") -> Any:
    from geryon.ui.server import DashboardConfig

    host, port = parse_listen(listen, option)
    return DashboardConfig(secret=secret, jobs_dir=jobs, host=host, port=port)


@click.command("ui")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              help="Where to serve the dashboard (port 0: any free port).")
@click.option("--login-url", "login_for", metavar="URL",
              help="Print a fresh one-time login URL for the dashboard running at URL, and exit.")
@click.option("--local", "force_local", is_flag=True, help="No cluster: show this machine's job records only.")
@registry_option
@secret_option
@_jobs_dir_option
def ui(listen: str, login_for: str | None, force_local: bool, registry_url: str | None, secret_file: str | None,
       jobs_dir_opt: str | None) -> None:
    """Serve the web dashboard: the cluster's nodes and disks, the jobs, each job's timeline.

    Prints a URL holding a one-time login token; the browser that opens it gets a session
    cookie. Read-only. Listens on loopback unless --listen says otherwise.
    """
    from geryon.ui.access import Access
    from geryon.ui.server import audience_of, login_url

    try:
        secret = cluster_secret(secret_file)
    except RegistryError as exc:
        fail(str(exc))
    if login_for:
        from urllib.parse import urlsplit

        parts = urlsplit(login_for if "://" in login_for else f"http://{login_for}")
        if parts.port is None:
            fail(f"{login_for!r}: give the dashboard's URL with its port (http://HOST:PORT)")
        base = f"{parts.scheme}://{parts.netloc}"
        click.echo(login_url(base, Access(secret, audience_of(parts.port)).mint()))
        return
    config = ui_config(secret, jobs_dir(jobs_dir_opt), listen)
    try:
        place = where(registry_url, secret_file, local=force_local)
    except GeryonError as exc:
        fail(str(exc))
    client = None
    if place.registry is not None:
        try:
            client = registry_client(place.registry, secret)
        except RegistryError as exc:
            fail(str(exc))
    else:
        click.echo(f"geryon: dashboard: no cluster ({place.why}): job records only", err=True)

    async def run(cfg: Any, stop: asyncio.Event) -> None:
        from geryon.ui.server import serve

        await serve(cfg, client, stop, announce)

    try:
        serve_until_signalled(run, config)
    except OSError as exc:
        fail(f"cannot listen on {listen}: {exc.strerror or exc}")
    finally:
        if client is not None:
            client.close()


async def serve_registry_with_ui(registry_config: Any, dashboard_config: Any, stop: asyncio.Event) -> None:
    """`registry serve --ui`: the registry and, in the same process, a dashboard reading it."""
    from geryon.ui.server import serve
    from registry.server import RegistryServer

    async with RegistryServer(registry_config) as server:
        print(f"registry: listening on {server.url} cluster {server.cluster}", flush=True)
        url = server.url.replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:")
        loop = asyncio.get_running_loop()
        client = await loop.run_in_executor(
            None, lambda: registry_client(url, registry_config.secret))
        try:
            await serve(dashboard_config, client, stop, announce)
        finally:
            await loop.run_in_executor(None, client.close)


commands: list[click.Command] = [ui]
