"""CLI verb: geryon mapreduce MAP REDUCE DISK... (local mode)."""
from __future__ import annotations

import os
import sys

import click

from geryon.errors import GeryonError
from geryon.job import DEFAULT_PARTITIONS, READERS, Job, combine_from_script, step_from_arg
from geryon.codec import FORMATS
from geryon.partition import PARTITIONERS
from geryon.cli.common import fail, ndb_option, showing, size_type


@click.command("mapreduce")
@click.argument("map_step", metavar="MAP")
@click.argument("reduce_step", metavar="REDUCE")
@click.argument("disks", nargs=-1, required=True, metavar="DISK...")
@click.option("-R", "partitions", type=click.IntRange(min=1), default=DEFAULT_PARTITIONS, show_default=True,
              help="Number of reduce partitions.")
@click.option("--out", "out", type=click.Path(file_okay=False), help="Directory for the part files [./JOB.out].")
@click.option("--name", "name", help="Job name (part files are JOB.part<r>) [the map script's name].")
@click.option("-j", "--workers", type=click.IntRange(min=1), help="Worker processes [one per core].")
@click.option("--streaming", is_flag=True, help="Treat MAP and REDUCE as commands, even .py files.")
@click.option("--reader", type=click.Choice(READERS), default="file", show_default=True,
              help="Records: whole file as text, one per line, whole file as bytes, mail message (mbox), "
                   "tar member, WARC record, or auto (by each file's extension). "
                   ".gz/.bz2/.xz/.zst files are read decompressed.")
@click.option("--skip-bad", "skip_bad", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Skip up to N malformed input records per map task (counted as geryon/skipped_records).")
@click.option("--partitioner", type=click.Choice(PARTITIONERS), default="crc32", show_default=True,
              help="crc32 (fast), or geryon: Inferno Geryon's exact hash.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Part files as key<TAB>value text, or JSON fields (exact types).")
@click.option("--sort-budget", type=size_type, default="256M", show_default=True,
              help="Memory per task for sorting before spilling to disk.")
@click.option("--split-size", type=size_type, default=None,
              help="Input bytes per map task [from the input size: one task per worker at least, up to 128M].")
@click.option("--workdir", type=click.Path(file_okay=False, exists=True),
              help="Where map outputs (the intermediate data) go [$TMPDIR].")
@ndb_option
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
def mapreduce(map_step: str, reduce_step: str, disks: tuple[str, ...], partitions: int, out: str | None,
              name: str | None, workers: int | None, streaming: bool, reader: str, partitioner: str, fmt: str,
              sort_budget: int, split_size: int | None, workdir: str | None, ndb_file: str | None,
              quiet: bool, skip_bad: int = 0) -> None:
    """Run MAP on every DISK, partition into R, sort and REDUCE each partition.

    MAP and REDUCE are Python scripts defining map(key, value) and reduce(key, values)
    (and optionally combine), or streaming commands reading stdin and writing
    key<TAB>value lines (an executable, or a command block such as '{ sort | uniq -c }').
    A DISK is a directory or a disk name from the ndb file.
    """
    from geryon.api import run_job
    from geryon.progress import LineProgress, RichProgress, summary_lines, summary_table

    try:
        map_s = step_from_arg(map_step, "map", streaming)
        reduce_s = step_from_arg(reduce_step, "reduce", streaming)
        combine_s = None if streaming else (combine_from_script(reduce_step) or combine_from_script(map_step))
        job = Job(map=map_s, reduce=reduce_s, combine=combine_s, partitions=partitions, name=name or "",
                  reader=reader, partitioner=partitioner, format=fmt, sort_budget=sort_budget,
                  split_size=split_size, env=(("GERYON_PARTITIONS", str(partitions)),), skip_bad=skip_bad)
    except GeryonError as exc:
        fail(str(exc))
    tty = sys.stderr.isatty() and not quiet
    progress = None if quiet else (RichProgress() if tty else LineProgress())
    with showing(progress, "nothing committed"):
        result = run_job(job, list(disks), out=out, workers=workers, ndb=ndb_file, progress=progress,
                         workdir=workdir)
    report = result.report
    click.echo(f"output: {_shown(report.out_dir)}")
    for part in report.parts:
        click.echo(_shown(part))
    if not quiet:
        if tty:
            from rich.console import Console

            Console(stderr=True).print(summary_table(report))
        else:
            for line in summary_lines(report):
                click.echo(line, err=True)


def _shown(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


commands: list[click.Command] = [mapreduce]
