"""CLI verbs: exec, status, taskfs — taskfs sessions from the shell.

A thin shell over `geryon.session` and `geryon.taskfs.fuse`: read options and the environment
(GERYON_REGISTRY, GERYON_SECRET_FILE, through the node verbs' shared options), open the
session, stream, map errors to one line. Where sessions run: `--node NODE_OR_URL` (a
tree's root); else the local-or-cluster rule (`geryon.cluster.where`: `--local`; `--registry` or
$GERYON_REGISTRY; a registry found over zeroconf: this client spreads over its cpus; else
this machine's cores). Not here: any session logic.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

import click

from geryon.cli.common import fail, local_option, registry_option, where
from geryon.cli.node import _client, _failing, _secret, _secret_option

log = logging.getLogger(__name__)

PICK_CHOICES = ("spread", "load")
"""`--pick` values (geryon.taskfs.tree.PICKS, repeated here so `--help` loads no aiohttp)."""

_registry_option = registry_option
_node_option = click.option("--node", default=None, metavar="NODE_OR_URL",
                            help="Run from this node (a tree's root): a registered name or http://host:port.")


class _Where:
    """The registry client a command needs (if any), closed on exit."""

    def __init__(self, node: str | None, registry_url: str | None, secret_file: str | None,
                 force_local: bool = False) -> None:
        by_url = node is not None and node.startswith(("http://", "https://", "tcp!"))
        if node is not None and force_local:
            raise click.UsageError("--node and --local: choose one")
        if not by_url:
            registry_url = where(registry_url, secret_file, local=force_local).registry
        self.node, self.secret = node, _secret(secret_file)
        self.registry: Any = _client(registry_url, self.secret) if registry_url and not by_url else None
        if node is not None and not by_url and self.registry is None:
            raise click.UsageError(f"--node {node}: a node name needs --registry (or give http://host:port)")

    def options(self) -> dict[str, Any]:
        # the rule was applied here: no registry means this machine, not "look again"
        return {"node": self.node, "registry": self.registry, "secret": self.secret,
                "local": self.node is None and self.registry is None}

    def __enter__(self) -> _Where:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.registry is not None:
            self.registry.close()


def _copy(src: Any, dst: BinaryIO) -> None:
    for line in src:
        dst.write(line)
        dst.flush()


def _feed(session: Any, stdin: BinaryIO) -> None:
    """Our stdin to every instance (nothing from a terminal), then end of input."""
    try:
        if not stdin.isatty():
            while block := stdin.read1(1 << 16) if hasattr(stdin, "read1") else stdin.read(1 << 16):
                session.stdin.write(block)
    except (OSError, ValueError) as exc:            # stdin closed or unreadable: no input
        log.debug("stdin: %s", exc)
    finally:
        try:
            session.stdin.close()
        except Exception as exc:                    # the session ended first (Ctrl-C, lost node)
            log.debug("closing input: %s", exc)


@click.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-n", "instances", type=click.IntRange(0), default=1, show_default=True,
              help="Instances to reserve (0: one, on the root itself).")
@click.option("--os", "os_name", default=None, metavar="OS", help="Only cpus running this OS (* for any).")
@click.option("--arch", default=None, metavar="ARCH", help="Only cpus of this architecture (* for any).")
@click.option("--tag", is_flag=True, help="Prefix each output line with [instance node].")
@click.option("--scatter", is_flag=True, help="Deal input lines round robin instead of sending each to all.")
@click.option("--pick", "pick_name", type=click.Choice(PICK_CHOICES), default="spread", show_default=True,
              help="Spread by the taskfs rule, or least loaded first (dsh's score).")
@_node_option
@_registry_option
@local_option
@_secret_option
@click.argument("argv", nargs=-1, required=True, metavar="[--] CMD...")
@click.pass_context
@_failing
def exec_command(ctx: click.Context, instances: int, os_name: str | None, arch: str | None, tag: bool,
                 scatter: bool, pick_name: str, node: str | None, registry_url: str | None,
                 secret_file: str | None, argv: tuple[str, ...], force_local: bool = False) -> None:
    """Reserve N instances, run CMD on all, print their merged output (`geryon exec -n 4 -- CMD...`).

    Input is sent to every instance (or dealt by line with --scatter); the exit status is
    the worst instance's.
    """
    from geryon.taskfs.client import session
    cmd: Any = argv[0] if len(argv) == 1 else list(argv)
    out, err = click.get_binary_stream("stdout"), click.get_binary_stream("stderr")
    with _Where(node, registry_url, secret_file, force_local) as here:
        try:
            with session(tag=tag, pick=pick_name, **here.options()) as s:
                s.reserve(instances, os_name, arch)
                s.exec(cmd, scatter=scatter)
                threads = [threading.Thread(target=_feed, args=(s, click.get_binary_stream("stdin")),
                                            name="geryon-exec-stdin", daemon=True),
                           threading.Thread(target=_copy, args=(s.stderr, err), name="geryon-exec-stderr")]
                for t in threads:
                    t.start()
                _copy(s.stdout, out)
                statuses = s.wait(close_input=False)
                threads[1].join()
        except KeyboardInterrupt:
            fail("interrupted: instances killed and released", 130)
    ctx.exit(max(statuses, default=0))


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON list: os, arch, nodes, cpus, free.")
@_node_option
@_registry_option
@local_option
@_secret_option
@_failing
def status_command(as_json: bool, node: str | None, registry_url: str | None, secret_file: str | None,
                   force_local: bool = False) -> None:
    """Count the nodes of the tree (or the registry, or this machine) per OS and architecture."""
    from geryon.taskfs.tree import format_counts
    from geryon.taskfs.client import cluster_status
    with _Where(node, registry_url, secret_file, force_local) as here:
        counts = cluster_status(**here.options())
    if as_json:
        click.echo(json.dumps([c.to_wire() for c in counts]))
    else:
        click.echo(format_counts(counts), nl=False)


@click.command("taskfs")
@click.argument("mountpoint", type=click.Path(exists=True, file_okay=False))
@click.option("--pick", "pick_name", type=click.Choice(PICK_CHOICES), default="spread", show_default=True,
              help="How sessions spread their instances.")
@click.option("--debug", is_flag=True, hidden=True, help="libfuse's debug output.")
@_node_option
@_registry_option
@local_option
@_secret_option
@_failing
def taskfs_command(mountpoint: str, pick_name: str, debug: bool, node: str | None, registry_url: str | None,
                   secret_file: str | None, force_local: bool = False) -> None:
    """Serve sessions as files on MOUNTPOINT (clone, status, N/ctl, N/stdio, ...) until unmounted."""
    from geryon.taskfs.tree import format_counts
    from geryon.taskfs.client import LoopThread, Session, cluster_status, session
    from geryon.taskfs.fuse import TaskFS, mount
    with _Where(node, registry_url, secret_file, force_local) as here:
        opts = here.options()

        def open_session(runner: LoopThread) -> Session:
            return session(runner=runner, pick=pick_name, **opts)

        def ready() -> None:
            click.echo(f"taskfs mounted on {mountpoint}")
            sys.stdout.flush()

        counts_text: Callable[[], str] = lambda: format_counts(cluster_status(**opts))
        mount(TaskFS(open_session, counts_text, ready), mountpoint, debug=debug)


commands: list[click.Command] = [exec_command, status_command, taskfs_command]
