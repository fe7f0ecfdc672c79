"""CLI verb: geryon init [--rotate [--grace 24h]] [--tls [--tls-name NAME]...].

Makes the cluster secret (as the first server or client would on first use), rotates it
keeping the previous one accepted for a grace period, and with `--tls` makes the cluster
CA (once) and this host's certificate beside the secret. Not here: the file formats
(`registry.secretfile`, `geryon.cluster.tlscerts`), using any of it (the servers and clients).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from geryon.defaults import DEFAULT_ROTATE_GRACE
from geryon.cli.common import default_secret_path, default_tls_dir, fail, secret_option

log = logging.getLogger(__name__)

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class DurationType(click.ParamType):
    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        unit = _UNITS.get(text[-1:], None)
        try:
            seconds = float(text[:-1] if unit else text) * (unit or 1.0)
        except ValueError:
            self.fail(f"{value!r} is not a duration (30s, 10m, 24h, 7d)", param, ctx)
        if seconds < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return seconds


@click.command("init")
@secret_option
@click.option("--force", is_flag=True, help="Replace an existing secret (the old one stops working at once, "
              "and connections opened with it are closed).")
@click.option("--rotate", is_flag=True, help="Replace the secret; the old one, kept as SECRET.old, is still "
              "accepted for --grace.")
@click.option("--grace", type=DurationType(), default=f"{DEFAULT_ROTATE_GRACE / 3600:g}h", show_default=True,
              help="How long servers still accept the old secret after --rotate.")
@click.option("--tls", is_flag=True, help="Also make the cluster CA (unless present) and this host's TLS certificate.")
@click.option("--tls-dir", type=click.Path(file_okay=False), default=None,
              help="Where --tls writes [$XDG_CONFIG_HOME/geryon/tls, where servers and clients look].")
@click.option("--tls-name", "tls_names", multiple=True, metavar="NAME",
              help="Another host name or address for the certificate (this host's are always in it).")
def init(secret_file: str | None, force: bool, rotate: bool, grace: float, tls: bool, tls_dir: str | None,
         tls_names: tuple[str, ...]) -> None:
    """Create the cluster secret (32 random bytes, mode 0600), rotate it, or make TLS certificates."""
    from geryon.errors import GeryonError
    from registry.errors import RegistryError
    from registry.secretfile import create_secret, ensure_secret, old_secret_path, rotate_secret

    if rotate and force:
        raise click.UsageError("--rotate keeps the old secret for a while, --force does not: give one")
    path = Path(secret_file) if secret_file else default_secret_path()
    try:
        if rotate:
            old = rotate_secret(path, grace=grace)
            until = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(old.expires))
            click.echo(f"wrote a new cluster secret {path}; the old one is kept in {old_secret_path(path)} "
                       f"(accepted until {until}): running servers and clients follow both files; copy "
                       "the new secret (mode 0600) to every machine before then (no restart needed)")
        elif tls and not force:
            _, created = ensure_secret(path)
            if created:
                click.echo(f"wrote cluster secret {path}; copy it (mode 0600) to every node")
        else:
            create_secret(path, overwrite=force)
            if force:                      # no earlier secret stays accepted, not even in a grace
                old_secret_path(path).unlink(missing_ok=True)
            click.echo(f"wrote cluster secret {path}; copy it (mode 0600) to every node")
        if tls:
            from geryon.cluster.tlscerts import make_host_cert

            made = make_host_cert(Path(tls_dir) if tls_dir else default_tls_dir(), extra_names=tls_names)
            if made.ca_created:
                click.echo(f"made the cluster CA {made.ca_cert} (its key {made.ca_key} signs host certificates: "
                           "keep it private)")
            click.echo(f"wrote {made.cert} and {made.key} for {', '.join(made.names)}; copy {made.ca_cert} to "
                       f"every machine and client, and run `geryon init --tls` on each machine with the CA "
                       "files copied beside its secret")
    except (GeryonError, RegistryError) as exc:
        fail(str(exc))


commands: list[click.Command] = [init]
