"""CLI verbs: node, rcpu, dsh, loads, ls, cat, cp.

A thin shell: read options and the environment (GERYON_REGISTRY, GERYON_SECRET_FILE,
GERYON_NDB, XDG_CONFIG_HOME, XDG_STATE_HOME), build a registry client and the library's
objects, call them, and turn GeryonError/RegistryError into one line and exit status 1.
"""
from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from fs import errors as fserrors

from geryon.cli.common import (cluster_secret, fail, local_option, ndb_option_for, registry_client, registry_option, secret_option,
                               serve_until_signalled, size_type, tls_files, tls_options, where)
from geryon.errors import GeryonError
from geryon.defaults import DEFAULT_NODE_PORT, DEFAULT_NODE_REFRESH as DEFAULT_REFRESH, DEFAULT_STEP_OUTPUT_GRACE
from geryon.cluster.hostfacts import host_source
from geryon.cluster.pick import PICKS
from registry.defaults import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS
from registry.errors import RegistryError

if TYPE_CHECKING:
    from geryon.node.daemon import NodeDisk

log = logging.getLogger(__name__)


def _secret(path: str | None) -> bytes:
    return cluster_secret(path)


def _client(registry_url: str | None, secret: bytes | None) -> Any:
    return registry_client(registry_url, secret)


def _failing(fn: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (GeryonError, RegistryError, fserrors.FSError, OSError) as exc:
            fail(str(exc) or type(exc).__name__)
    return wrapper


_secret_option = secret_option
_registry_option = registry_option


def _disk_spec(values: tuple[str, ...], replica: bool) -> list[NodeDisk]:
    from geryon.node.daemon import NodeDisk

    out = []
    for v in values:
        name, eq, path = v.partition("=")
        if not eq or not name or not path:
            raise click.BadParameter(f"{v!r} is not NAME=PATH", param_hint="--disk")
        out.append(NodeDisk(name, os.path.abspath(path), replica))
    return out


@click.command("node")
@click.option("--name", default=socket.gethostname, show_default="host name",
              help="This node's name (ndb master=NAME!CHUNK).")
@click.option("--disk", "disks", multiple=True, metavar="NAME=PATH",
              help="Serve a chunk disk (an empty directory is made a 64M chunk; one holding files is served as is).")
@click.option("--replica", "replicas", multiple=True, metavar="NAME=PATH", help="Serve a read-only replica chunk.")
@click.option("--cpus", type=click.IntRange(1), default=None, help="Cores offered (default: all).")
@click.option("--listen", default=None, metavar="HOST:PORT",
              help=f"Address to listen on (default 0.0.0.0:{DEFAULT_NODE_PORT}).")
@click.option("--advertise", default=None, metavar="ADDR",
              help="Address others reach this node at [the --listen host, else the address of the route to the "
                   "registry or of the default route; never loopback when the registry is elsewhere].")
@click.option("--work-dir", type=click.Path(file_okay=False), default=None,
              help="Run directories and the export cache (default: a temporary directory).")
@click.option("--refresh", type=float, default=DEFAULT_REFRESH, show_default=True,
              help="Seconds between load/free-space updates.")
@click.option("--standalone", is_flag=True, help="Serve without registering.")
@click.option("--fake-load", type=float, default=None, hidden=True, help="Report this load (tests).")
@click.option("--chunk-pool", "pool", type=click.Path(file_okay=False), default=None,
              help="Directory new chunks are made in on request (disk new --cluster, load, replicate).")
@click.option("--pool-size", type=size_type, default=None,
              help="Total capacity the pool may hand out (default: the filesystem's free space).")
@click.option("--parent", default=None, metavar="NODE_OR_URL",
              help="Join a taskfs tree as a child of this node (a name in the registry, or http://host:port).")
@click.option("--unpack-limit", type=size_type, default=None,
              help="Most bytes one job pack or rcpu export may unpack to (default 256M).")
@click.option("--unpack-files", type=click.IntRange(1), default=None,
              help="Most members one job pack or rcpu export may hold (default 10000).")
@click.option("--virtual-seconds", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Seconds over which each accepted dispatch's virtual load (1.0) decays (default 5).")
@click.option("--max-connections", type=click.IntRange(1), default=DEFAULT_MAX_CONNECTIONS, show_default=True,
              help="Most open connections (at most half the open-file limit is used).")
@click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_IDLE_TIMEOUT,
              show_default=True, metavar="SECONDS",
              help="Seconds a connection may take to send a request's headers, or stay idle.")
@click.option("--step-output-grace", type=click.FloatRange(min=0), default=DEFAULT_STEP_OUTPUT_GRACE,
              show_default=True, metavar="SECONDS",
              help="Seconds a multi-step job's intermediate step output outlives its driver.")
@click.option("--claim-lease", type=click.FloatRange(min=0.1), default=None, metavar="SECONDS",
              help="Seconds a load's claim on a chunk lasts unrenewed; then the chunk is reclaimed (default 60).")
@_registry_option
@_secret_option
@tls_options
@_failing
def node(name: str, disks: tuple[str, ...], replicas: tuple[str, ...],
         cpus: int | None, listen: str | None, advertise: str | None, work_dir: str | None,
         refresh: float, standalone: bool, fake_load: float | None, pool: str | None,
         pool_size: int | None, parent: str | None, unpack_limit: int | None, unpack_files: int | None,
         virtual_seconds: float | None, max_connections: int, idle_timeout: float,
         claim_lease: float | None, step_output_grace: float, registry_url: str | None, secret_file: str | None, tls_cert: str | None, tls_key: str | None,
         tls_ca: str | None) -> None:
    """Serve this machine's chunk disks and cpu to the cluster (until SIGTERM)."""
    secret = cluster_secret(secret_file, serving=f"node {name}")
    tls = tls_files(tls_cert, tls_key, tls_ca, serving=f"node {name}")
    host, _, port = (listen or f"0.0.0.0:{DEFAULT_NODE_PORT}").rpartition(":")
    if not port.isdigit():
        raise click.BadParameter(f"{listen!r} is not HOST:PORT", param_hint="--listen")
    registry = None if standalone else _client(registry_url, secret)
    from geryon.node.daemon import NodeConfig, serve
    from registry.guard import ConnectionLimits

    config = NodeConfig(name=name, disks=tuple(_disk_spec(disks, False) + _disk_spec(replicas, True)),
                        cpus=cpus, host=host.strip("[]") or "0.0.0.0", port=int(port),
                        advertise=advertise, secret=secret, registry=registry, work_dir=work_dir,
                        refresh=refresh, load_source=host_source(cpus, fake_load), parent=parent,
                        pool=os.path.abspath(pool) if pool else None, pool_size=pool_size,
                        unpack=_unpack_limits(unpack_limit, unpack_files), tls=tls,
                        limits=ConnectionLimits(max_connections=max_connections, idle_timeout=idle_timeout),
                        **({"claim_lease": claim_lease} if claim_lease else {}),
                        step_output_grace=step_output_grace,
                        **({"virtual_seconds": virtual_seconds} if virtual_seconds is not None else {}))

    try:
        serve_until_signalled(serve, config)
    finally:
        if registry is not None:
            registry.close()


def _unpack_limits(max_bytes: int | None, max_members: int | None) -> Any:
    from geryon.defaults import DEFAULT_UNPACK_MAX_BYTES as DEFAULT_MAX_BYTES, DEFAULT_UNPACK_MAX_MEMBERS as DEFAULT_MAX_MEMBERS
    from geryon.records.untar import UnpackLimits

    return UnpackLimits(max_bytes or DEFAULT_MAX_BYTES, max_members or DEFAULT_MAX_MEMBERS)


# -- rcpu, dsh, loads ---------------------------------------------------------------------
def _state_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "geryon" / "rcpu.json"


def _load_state() -> dict[str, Any]:
    try:
        doc = json.loads(_state_file().read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_state(doc: dict[str, Any]) -> None:
    path = _state_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)
    except OSError:
        pass                     # round robin is a courtesy; never fail a run over it


def _weights(ndb_file: str | None) -> dict[str, Any]:
    from geryon.cluster.pick import weights_from_entries
    if not ndb_file or not os.path.exists(ndb_file):
        return {}
    import ndb
    try:
        return weights_from_entries(ndb.open(ndb_file).entries)
    except ndb.NdbError as exc:
        raise GeryonError(str(exc)) from exc


_ndb_option = ndb_option_for("(dsh weights: node=HOST load=W mem=W) [$GERYON_NDB]")


@click.command("rcpu", context_settings={"ignore_unknown_options": True})
@click.option("--export", type=click.Path(exists=True, file_okay=False), default=None,
              help="Ship this directory to the cpu, seen there as $n/client.")
@click.option("--pick", "pick_name", type=click.Choice(PICKS), default="rr", show_default=True,
              help="How to choose the cpu: round robin, least loaded, locality first.")
@click.argument("cmd")
@click.argument("disks", nargs=-1)
@_ndb_option
@_registry_option
@_secret_option
@click.pass_context
@_failing
def rcpu_command(ctx: click.Context, export: str | None, pick_name: str, cmd: str, disks: tuple[str, ...],
                 ndb_file: str | None, registry_url: str | None, secret_file: str | None) -> None:
    """Run CMD on the next cpu with DISKs mounted under $n; print the output disk."""
    from geryon.cluster.dsh import Dsh
    from geryon.cluster.pick import LocalityFirst, RoundRobin
    from geryon.cluster.rcpu import Rcpu
    secret = _secret(secret_file)
    state = _load_state()
    with _client(registry_url, secret) as registry:
        if pick_name == "rr":
            pick: Any = RoundRobin(state.get("cpu"))
        elif pick_name == "local":
            pick = LocalityFirst(lambda d: [s.get("host") for s in registry.find({"chunk": "*"})
                                            if s.name == d and s.get("host")], RoundRobin(state.get("cpu")))
        else:
            pick = None                            # least loaded: dsh's chooser, loads read from the nodes
        disk_state = dict(state.get("disks") or {})
        with (Rcpu(registry, secret, pick=pick, disk_state=disk_state) if pick is not None
              else Dsh(registry, secret, weights=_weights(ndb_file), disk_state=disk_state)) as runner:
            try:
                result = runner.run(cmd, disks, export=export)
            except KeyboardInterrupt:
                fail("interrupted: remote command killed", 130)
            finally:
                last = getattr(pick, "last", None) or getattr(getattr(pick, "fallback", None), "last", None)
                _save_state({"cpu": last or state.get("cpu"), "disks": disk_state})
    if result.cpudisk:
        click.echo(result.cpudisk)
    ctx.exit(result.status)


@click.command("dsh", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("argv", nargs=-1, required=True)
@_ndb_option
@_registry_option
@_secret_option
@click.pass_context
@_failing
def dsh_command(ctx: click.Context, argv: tuple[str, ...], ndb_file: str | None, registry_url: str | None,
                secret_file: str | None) -> None:
    """Run a command on the least-loaded node (`geryon dsh -- CMD ARGS...`)."""
    from geryon.cluster.dsh import Dsh
    secret = _secret(secret_file)
    cmd: Any = argv[0] if len(argv) == 1 else list(argv)
    with _client(registry_url, secret) as registry, \
            Dsh(registry, secret, weights=_weights(ndb_file)) as dsh:
        try:
            result = dsh.run(cmd)
        except KeyboardInterrupt:
            fail("interrupted: remote command killed", 130)
    click.echo(f"geryon: dsh: ran on {result.host}", err=True)
    ctx.exit(result.status)


@click.command("loads")
@_ndb_option
@_registry_option
@_secret_option
@_failing
def loads_command(ndb_file: str | None, registry_url: str | None, secret_file: str | None) -> None:
    """Print the table dsh decides from, best node first."""
    from geryon.cluster.dsh import LOAD_HEADER, Dsh
    secret = _secret(secret_file)
    with _client(registry_url, secret) as registry, \
            Dsh(registry, secret, weights=_weights(ndb_file)) as dsh:
        rows = [LOAD_HEADER] + [r.cells() for r in dsh.loads()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(LOAD_HEADER))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


# -- ls, cat, cp --------------------------------------------------------------------------
class _Disks:
    """Opens disk arguments by the local-or-cluster rule (`geryon.cluster.where`): a URL is opened where
    it points, a path here; a name here when it is named on this machine (ndb `path=`) and no
    registry is given, else through the registry given or found over zeroconf."""

    def __init__(self, registry_url: str | None, secret_file: str | None, ndb_file: str | None,
                 force_local: bool = False) -> None:
        from geryon.disks.remote import set_default_secret
        self.secret = _secret(secret_file)
        set_default_secret(self.secret)
        self.registry_url, self.secret_file, self.ndb_file = registry_url, secret_file, ndb_file
        self.force_local = force_local
        self._registry: Any = None

    def open(self, disk: str) -> Any:
        from geryon.disks.resolve import resolve
        from geryon.errors import UnknownDisk
        from geryon.disks.opendisk import open_disk
        if disk.startswith(("geryon://", "http://", "https://")) or os.sep in disk or os.path.isdir(disk):
            return open_disk(disk, secret=self.secret, ndb_file=self.ndb_file)
        elsewhere = None
        if not self.registry_url and self._registry is None:
            try:
                return resolve(disk, self.ndb_file)
            except UnknownDisk as exc:
                elsewhere = str(exc)
        if self._registry is None:
            url = where(self.registry_url, self.secret_file, local=self.force_local, names_data=True,
                        elsewhere=elsewhere).registry
            if url is None:
                return resolve(disk, self.ndb_file)
            self._registry = _client(url, self.secret)
        return open_disk(disk, registry=self._registry, secret=self.secret, ndb_file=self.ndb_file)

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None

    def __enter__(self) -> _Disks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def split_location(arg: str) -> tuple[str, str] | None:
    """`DISK:PATH` or `geryon://host:port/chunk/PATH` -> (disk, path); None for a local file."""
    if arg.startswith(("geryon://", "http://", "https://")):
        scheme, rest = arg.split("://", 1)
        hostport, _, path = rest.partition("/")
        chunk, _, inner = path.partition("/")
        return f"{scheme}://{hostport}/{chunk}", "/" + inner
    disk, colon, path = arg.partition(":")
    if not colon:
        return None
    return disk, path or "/"


@click.command("ls")
@click.option("-l", "long", is_flag=True, help="Show sizes.")
@click.argument("location")
@_ndb_option
@_registry_option
@local_option
@_secret_option
@_failing
def ls_command(long: bool, location: str, ndb_file: str | None, registry_url: str | None,
               secret_file: str | None, force_local: bool = False) -> None:
    """List DISK[:PATH] (a disk name, directory or geryon:// URL)."""
    loc = split_location(location) or (location, "/")
    with _Disks(registry_url, secret_file, ndb_file, force_local) as disks:
        disk = disks.open(loc[0])
        with disk.fs as f:
            if f.isfile(loc[1]):
                entries = [f.getinfo(loc[1], ["details"])]
            else:
                entries = sorted(f.scandir(loc[1], ["details"]), key=lambda i: i.name)
    for info in entries:
        name = info.name + ("/" if info.is_dir else "")
        click.echo(f"{info.size if not info.is_dir else '-':>12} {name}" if long else name)


@click.command("cat")
@click.argument("locations", nargs=-1, required=True)
@_ndb_option
@_registry_option
@local_option
@_secret_option
@_failing
def cat_command(locations: tuple[str, ...], ndb_file: str | None, registry_url: str | None,
                secret_file: str | None, force_local: bool = False) -> None:
    """Write DISK:PATH files to stdout."""
    out = click.get_binary_stream("stdout")
    with _Disks(registry_url, secret_file, ndb_file, force_local) as disks:
        for location in locations:
            loc = split_location(location)
            if loc is None:
                raise click.BadParameter(f"{location!r} is not DISK:PATH")
            with disks.open(loc[0]).fs as f:
                f.download(loc[1], out)
    out.flush()


@click.command("cp")
@click.argument("src")
@click.argument("dst")
@_ndb_option
@_registry_option
@local_option
@_secret_option
@_failing
def cp_command(src: str, dst: str, ndb_file: str | None, registry_url: str | None,
               secret_file: str | None, force_local: bool = False) -> None:
    """Copy a file: SRC and DST are local paths or DISK:PATH (names, dirs, geryon:// URLs)."""
    from fs.path import basename, join
    s, d = split_location(src), split_location(dst)
    with _Disks(registry_url, secret_file, ndb_file, force_local) as disks:
        if s is None:
            reader: Any = open(src, "rb")  # noqa: SIM115 - closed below
            name = os.path.basename(src)
        else:
            sfs = disks.open(s[0]).fs
            reader = sfs.openbin(s[1])
            name = basename(s[1])
        try:
            if d is None:
                target = os.path.join(dst, name) if os.path.isdir(dst) else dst
                with open(target, "wb") as out:
                    import shutil
                    shutil.copyfileobj(reader, out, 1 << 20)
            else:
                dfs = disks.open(d[0]).fs
                path = join(d[1], name) if d[1].endswith("/") or dfs.isdir(d[1]) else d[1]
                dfs.upload(path, reader)
        finally:
            reader.close()


commands: list[click.Command] = [node, rcpu_command, dsh_command, loads_command, ls_command,
                                 cat_command, cp_command]
