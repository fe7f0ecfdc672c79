"""Pieces shared by the CLI verbs: failing with one line, sizes, the options every verb that
talks to a cluster takes (--registry with --mdns-interface, --secret-file, --ndb, --local: each
defined once here, as a `SharedOption`), where a command runs (`where`, the rule of
`geryon.cluster.where`), the secret, the registry client.

Not here: any verb's own logic; the local-or-cluster rule itself (`geryon.cluster.where`); the secret
file's format and rules (`registry.secretfile`).
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

from geryon.disks.chunk import parse_size
from geryon.cluster.where import ENV_MDNS_INTERFACES, ENV_REGISTRY, Where, choose, interfaces_from, zeroconf_finder

log = logging.getLogger(__name__)

ENV_SECRET_FILE = "GERYON_SECRET_FILE"
ENV_TLS_CERT = "GERYON_TLS_CERT"
ENV_TLS_KEY = "GERYON_TLS_KEY"
ENV_TLS_CA = "GERYON_TLS_CA"
SECRET_HELP = ("Cluster secret [$GERYON_SECRET_FILE, else $XDG_CONFIG_HOME/geryon/secret or "
               "~/.config/geryon/secret, created on first use].")


ENV_OWNER = "GERYON_OWNER"


def default_owner() -> str:
    """The user name (registry(4) owners are user names); uid if there is none."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def default_secret_path() -> Path:
    """The default secret file for this user (`registry.secretfile.default_secret_path`)."""
    from registry.secretfile import default_secret_path as rule

    return rule(os.environ)


class SharedOption(click.Option):
    """An option defined once in this module for every verb (`shared` names which)."""

    def __init__(self, *args: Any, shared: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared = shared


def secret_option(f: Any) -> Any:
    """--secret-file FILE (or $GERYON_SECRET_FILE)."""
    return click.option("--secret-file", envvar=ENV_SECRET_FILE, metavar="FILE", help=SECRET_HELP,
                        cls=SharedOption, shared="secret")(f)


def cluster_secret(secret_file: str | None, *, serving: str | None = None) -> bytes:
    """The cluster secret every server requires and every client signs with (a
    `registry.secretfile.WatchedSecret`: a rotation of its file takes effect while running).

    A named file (--secret-file, $GERYON_SECRET_FILE) must exist; with none named, the
    default file is used and created on first use (mode 0600). A server (`serving` names
    it) says once on stderr where its secret is.

    Raises:
        RegistryError: unreadable or unsafe secret file.
    """
    from registry.secretfile import ensure_secret, watch_secret

    path = Path(secret_file) if secret_file else default_secret_path()
    created = False if secret_file else ensure_secret(path)[1]
    secret = watch_secret(path)           # follows `geryon init --rotate` while running
    if serving is not None:
        how = "created now; copy it (mode 0600) to every machine of the cluster" if created else "mode 0600"
        click.echo(f"geryon: {serving}: cluster secret {path} ({how})", err=True)
    elif created:
        log.warning("created a new cluster secret %s: to join a cluster, copy its secret there", path)
    configure_client_tls(None)
    return secret


def existing_secret(secret_file: str | None) -> bytes | None:
    """The cluster secret if there is one (a named file must exist), else None; never creates one:
    with no secret, no registry of ours can answer zeroconf.

    Raises:
        RegistryError: unreadable or unsafe secret file.
    """
    from registry.secretfile import load_secret

    path = Path(secret_file) if secret_file else default_secret_path()
    if not secret_file and not path.exists():
        return None
    configure_client_tls(None)
    return load_secret(path)


REGISTRY_HELP = "The cluster's registry: http://host:port or tcp!host!port [$GERYON_REGISTRY; else found over zeroconf]."


MDNS_HELP = "Use zeroconf only on these interface addresses (repeatable) [$GERYON_MDNS_INTERFACES; else every one]."
_MDNS_KEY = "geryon.mdns_interfaces"


def _keep_interfaces(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    ctx.meta[_MDNS_KEY] = interfaces_from(" ".join(value or ()))


def mdns_option(f: Any) -> Any:
    """--mdns-interface ADDR (or $GERYON_MDNS_INTERFACES), read by `mdns_interfaces()`, not passed to the verb."""
    return click.option("--mdns-interface", "mdns_interfaces", multiple=True, metavar="ADDR",
                        envvar=ENV_MDNS_INTERFACES, expose_value=False, callback=_keep_interfaces,
                        help=MDNS_HELP, cls=SharedOption, shared="mdns")(f)


def registry_option(f: Any) -> Any:
    """--registry URL (or $GERYON_REGISTRY) and the zeroconf interfaces to look for one on:
    the one definition every verb uses."""
    f = mdns_option(f)
    return click.option("--registry", "registry_url", envvar=ENV_REGISTRY, metavar="URL", help=REGISTRY_HELP,
                        cls=SharedOption, shared="registry")(f)


def local_option(f: Any) -> Any:
    """--local: run on this machine whatever registry is configured or answers."""
    return click.option("--local", "force_local", is_flag=True, cls=SharedOption, shared="local",
                        help="Run on this machine, even with --registry, $GERYON_REGISTRY or a registry on the network.")(f)


def mdns_interfaces() -> tuple[str, ...] | None:
    """Where zeroconf looks (None: every interface): --mdns-interface of the running verb, else
    $GERYON_MDNS_INTERFACES (comma or space separated)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and _MDNS_KEY in ctx.meta:     # meta is shared by a command's nested contexts
        return ctx.meta[_MDNS_KEY]
    return interfaces_from(os.environ.get(ENV_MDNS_INTERFACES, ""))


def registry_client(registry_url: str | None, secret: bytes | None, owner: str | None = None) -> Any:
    """The one way a verb makes its registry client: the user as owner unless told, the verb's
    zeroconf interfaces."""
    from registry.client import RegistryClient

    return RegistryClient(registry_url, secret=secret, owner=owner or default_owner(),
                          mdns_interfaces=mdns_interfaces())


def where(registry_url: str | None, secret_file: str | None, *, local: bool = False, names_data: bool = False,
          elsewhere: str | None = None) -> Where:
    """Where this command runs: `geryon.cluster.where.choose`, looking over zeroconf with this cluster's secret.

    Raises:
        UnknownDisk: a named disk is not here and no registry answered.
        GeryonError: the secret file is unreadable.
    """
    from geryon.errors import GeryonError
    from registry.errors import RegistryError

    secret = None
    if not local and not registry_url and not (names_data and elsewhere is None):
        try:
            secret = existing_secret(secret_file)
        except RegistryError as exc:
            raise GeryonError(str(exc)) from exc
    return choose(local=local, registry=registry_url, names_data=names_data, elsewhere=elsewhere,
                  find=zeroconf_finder(secret, mdns_interfaces()))


def default_tls_dir() -> Path:
    """Where `geryon init --tls` writes, and servers and clients look: beside the default secret."""
    from registry.tls import TLS_DIR

    return default_secret_path().parent / TLS_DIR


def _given_or_default(given: str | None, env: str, name: str) -> Path | None:
    value = given or os.environ.get(env)
    if value:
        return Path(value)
    default = default_tls_dir() / name
    return default if default.exists() else None


def configure_client_tls(ca: str | None) -> Path | None:
    """Speak TLS to the cluster if a CA is configured: `ca`, $GERYON_TLS_CA, else the CA
    `geryon init --tls` wrote (if any). Returns the CA used, None for plain HTTP.

    Raises:
        RegistryError: the CA file does not load.
    """
    from registry.tls import CA_CERT, use_cluster_tls

    path = _given_or_default(ca, ENV_TLS_CA, CA_CERT)
    use_cluster_tls(path, enabled=path is not None)
    return path


def tls_options(f: Any) -> Any:
    """--tls-cert, --tls-key, --tls-ca (and $GERYON_TLS_*), for the servers."""
    from registry.tls import CA_CERT, HOST_CERT, HOST_KEY

    where = "else " + str(Path("$XDG_CONFIG_HOME/geryon/tls")) + "/"
    f = click.option("--tls-ca", metavar="FILE", help=f"CA that peers' certificates are checked against "
                     f"[$GERYON_TLS_CA, {where}{CA_CERT} if present].")(f)
    f = click.option("--tls-key", metavar="FILE", help=f"This server's TLS key [$GERYON_TLS_KEY, {where}{HOST_KEY}].")(f)
    return click.option("--tls-cert", metavar="FILE", help="Serve TLS with this certificate "
                        f"[$GERYON_TLS_CERT, {where}{HOST_CERT} if present; else plain HTTP].")(f)


def tls_files(cert: str | None, key: str | None, ca: str | None, *, serving: str) -> Any:
    """The server's TLS files (a `registry.tls.TlsFiles`, empty for plain HTTP); also makes this
    process's own client connections use the cluster CA. Says on stderr which it is.

    Raises:
        RegistryError: a key without a certificate (or the reverse), or files that do not load.
    """
    from registry.errors import RegistryError
    from registry.tls import HOST_CERT, HOST_KEY, TlsFiles, server_context

    cert_path = _given_or_default(cert, ENV_TLS_CERT, HOST_CERT)
    key_path = _given_or_default(key, ENV_TLS_KEY, HOST_KEY)
    if (cert_path is None) != (key_path is None):
        raise RegistryError("TLS needs both --tls-cert and --tls-key")
    ca_path = configure_client_tls(ca)
    files = TlsFiles(cert_path, key_path, ca_path)
    if files.serving:
        server_context(files)                     # fail now, in one line, if they do not load
        click.echo(f"geryon: {serving}: TLS with {cert_path}"
                   + (f", peers checked against {ca_path}" if ca_path else ""), err=True)
    return files


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


CLUSTER_NDB_NAME = "cluster.ndb"
"""The registry's ndb file when it is given none: beside the default secret."""


def default_cluster_ndb() -> Path:
    """Where the registry keeps the cluster's disk names by default ($GERYON_NDB, else
    $XDG_CONFIG_HOME/geryon/cluster.ndb or ~/.config/geryon/cluster.ndb)."""
    given = os.environ.get("GERYON_NDB")
    return Path(given) if given else default_secret_path().parent / CLUSTER_NDB_NAME


def default_ndb() -> str | None:
    """The ndb file from GERYON_NDB, if set (else the library's ./ndb/cluster rule)."""
    return os.environ.get("GERYON_NDB") or None


def ndb_option_for(what: str) -> Callable[[Any], Any]:
    """--ndb FILE (or $GERYON_NDB): `what` the verb reads in it goes in the help."""
    def option(f: Any) -> Any:
        return click.option("--ndb", "ndb_file", type=click.Path(dir_okay=False), default=default_ndb,
                            help=f"ndb file {what}.", cls=SharedOption, shared="ndb")(f)
    return option


ndb_option = ndb_option_for("naming disks [$GERYON_NDB, else ./ndb/cluster; `load --cluster`: the registry's]")


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
