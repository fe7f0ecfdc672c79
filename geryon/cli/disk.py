"""CLI verbs: geryon disk new|info|check|replicate|promote.

`new PATH` makes a local chunk disk; `new NAME --cluster` asks the registry for the node
with the most room (a free chunk, or its chunk pool) and names the disk in the cluster's ndb
file (the registry's, unless --ndb or $GERYON_NDB names one).
`replicate` and `promote` manage a cluster disk's replicas (`geryon.disks.replicate`).
"""
from __future__ import annotations

import sys

import click

from geryon.defaults import DEFAULT_CAPACITY
from geryon.disks.chunk import ChunkFS, create_chunk
from geryon.cli.common import fail, ndb_option, size_type
from geryon.cli.data import check as _check
from geryon.cli.data import cluster, cluster_ndb, cluster_options
from geryon.errors import GeryonError


@click.group("disk")
def disk() -> None:
    """Chunk disks: directories with a capacity, locally or on the cluster's nodes."""


@disk.command("new")
@click.argument("path", metavar="PATH|NAME", type=click.Path(file_okay=False))
@click.option("--size", type=size_type, default=str(DEFAULT_CAPACITY), show_default="64M",
              help="Capacity of the chunk (e.g. 64M, 1G).")
@click.option("--cluster", "on_cluster", is_flag=True,
              help="Make the chunk on the node with the most room and name it NAME in the ndb file.")
@click.option("--host", default=None, metavar="NODE", help="With --cluster: on this node.")
@ndb_option
@cluster_options
def new(path: str, size: int, on_cluster: bool, host: str | None, ndb_file: str | None,
        registry_url: str | None, secret_file: str | None) -> None:
    """Make a chunk disk at PATH (or, with --cluster, disk NAME on a node) of --size bytes."""
    if not on_cluster:
        if host is not None:
            raise click.UsageError("--host needs --cluster")
        try:
            create_chunk(path, size)
        except (GeryonError, OSError) as exc:
            fail(str(exc))
        click.echo(path)
        return
    from geryon.disks.allocate import give_back, new_chunk
    from geryon.disks.diskdb import DiskEntry, find_disk, named_chunks, names_pattern, replace_disks

    if "/" in path or "!" in path or path.startswith("."):
        fail(f"{path}: a cluster disk needs a plain name such as d0.mail")
    with cluster(registry_url, secret_file) as (registry, secret), cluster_ndb(registry, ndb_file) as db:
        where = db if ndb_file else "the registry's ndb file"
        if find_disk(db, path) is not None:
            fail(f"{path}: already named in {where}")
        ref = new_chunk(registry, secret, size, host, named_chunks(db))
        try:
            replace_disks(db, names_pattern([path]), [DiskEntry(path, None, ref.host, chunk=ref.chunk)])
        except BaseException:
            give_back(ref, secret)
            raise
    click.echo(ref.where)
    click.echo(f"geryon: {path}: {size} bytes on {ref.where}; named in {where}", err=True)


@disk.command("info")
@click.argument("path", type=click.Path(file_okay=False))
def info(path: str) -> None:
    """Print a disk's capacity, used and free bytes."""
    try:
        chunk = ChunkFS(path)
        used = chunk.used()
    except (GeryonError, OSError) as exc:
        fail(str(exc))
    cap = "unbounded" if chunk.capacity is None else str(chunk.capacity)
    free = "unbounded" if chunk.capacity is None else str(max(0, chunk.capacity - used))
    click.echo(f"{path} capacity {cap} used {used} free {free}")


@disk.command("replicate")
@click.argument("name", metavar="DISK")
@click.option("--to", "to_host", required=True, metavar="NODE", help="The node to hold the replica.")
@click.option("--accept-changes", is_flag=True,
              help="Files of the master changed outside Geryon were meant: record and copy them.")
@click.option("--verify", is_flag=True,
              help="Read every file on both sides rather than trusting unchanged sizes and mtimes.")
@ndb_option
@cluster_options
def replicate_command(name: str, to_host: str, accept_changes: bool, verify: bool, ndb_file: str | None,
                      registry_url: str | None, secret_file: str | None) -> None:
    """Make DISK's replica on NODE, or bring it up to date (only changed files move).

    Prints the replica's name and where it lives.
    """
    from geryon.disks.replicate import replicate

    with cluster(registry_url, secret_file) as (registry, secret), cluster_ndb(registry, ndb_file) as db:
        report = replicate(name, to_host, registry=registry, secret=secret, ndb_file=db,
                           accept_changes=accept_changes, verify=verify)
    s = report.sync
    click.echo(f"{report.replica} {report.target.where}")
    click.echo(f"geryon: {report.replica}: {'made and filled' if report.created else 'brought up to date'}: "
               f"{s.copied} files copied ({s.bytes_moved} of {s.bytes_total} bytes), {s.removed} removed, "
               f"{s.kept} unchanged, in {s.seconds:.2f} s", err=True)


@disk.command("promote")
@click.argument("name", metavar="DISK")
@click.option("--replica", default=None, metavar="REPLICA", help="Which replica (default: the first live one).")
@click.option("--force", is_flag=True, help="Promote even though the master still answers.")
@ndb_option
@cluster_options
def promote_command(name: str, replica: str | None, force: bool, ndb_file: str | None,
                    registry_url: str | None, secret_file: str | None) -> None:
    """Make a replica of DISK its master (for a dead master); updates the ndb file."""
    from geryon.disks.replicate import promote

    with cluster(registry_url, secret_file) as (registry, secret), cluster_ndb(registry, ndb_file) as db:
        report = promote(name, registry=registry, secret=secret, ndb_file=db, replica=replica, force=force)
    click.echo(report.new_master)
    hint = "" if report.replicas_left else f"; no replica left: geryon disk replicate {name} --to NODE"
    click.echo(f"geryon: {name}: master is now {report.new_master} (was {report.old_master}){hint}", err=True)
    sys.stdout.flush()


disk.add_command(_check, "check")

commands: list[click.Command] = [disk]
