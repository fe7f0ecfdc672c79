"""CLI verbs: geryon disk new|info."""
from __future__ import annotations

import click

from geryon.chunk import DEFAULT_CAPACITY, ChunkFS, create_chunk
from geryon.cli.common import fail, size_type
from geryon.errors import GeryonError


@click.group("disk")
def disk() -> None:
    """Chunk disks: directories with a capacity."""


@disk.command("new")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--size", type=size_type, default=str(DEFAULT_CAPACITY), show_default="64M",
              help="Capacity of the chunk (e.g. 64M, 1G).")
def new(path: str, size: int) -> None:
    """Make a chunk disk at PATH with a capacity of --size bytes."""
    try:
        create_chunk(path, size)
    except (GeryonError, OSError) as exc:
        fail(str(exc))
    click.echo(path)


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


from geryon.cli.data import check as _check  # noqa: E402  (defined with the data verbs)

disk.add_command(_check, "check")

commands: list[click.Command] = [disk]
