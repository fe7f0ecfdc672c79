"""CLI verb: geryon mapreduce MAP REDUCE DISK..., or JOB.py DISK... for a script listing steps
(local mode or across a cluster).

Which mode: the rule every verb follows (`geryon.cluster.where`): `--local` forces local mode;
`--registry URL` or GERYON_REGISTRY chooses the cluster; otherwise, when every DISK is on
this machine (a directory, a file or glob, or an ndb disk with `path=`), the job runs locally
at once, and when one is not, a registry is looked for over zeroconf and the job runs on the
cluster it finds.
"""
from __future__ import annotations

import os
import sys
from typing import Any

import click

from geryon.errors import GeryonError, UnknownDisk
from geryon.defaults import DEFAULT_LEASE, DEFAULT_PARTITIONS, DEFAULT_SORT_BUDGET
from geryon.mapreduce.job import (READER_OF_DISKS, READERS, Job, add_import_path, combine_from_script,
                                  hooks_from_script, parse_assignment, partition_from_script, sort_values_of,
                                  step_from_arg, steps_from_script)
from geryon.mapreduce.jobparams import task_env
from geryon.mapreduce.jobhistory import JobState
from geryon.mapreduce.codec import FORMATS
from geryon.mapreduce.partition import PARTITIONERS
from geryon.cli.jobinputs import check_local_ndb, local_problem, refuse_local_paths
from geryon.cli.common import (cluster_secret, fail, local_option, ndb_option, registry_client, registry_option, secret_option,
                               showing, size_type, where)


@click.command("mapreduce")
@click.argument("map_step", metavar="MAP")
@click.argument("reduce_step", metavar="REDUCE")
@click.argument("disks", nargs=-1, required=False, metavar="DISK...")
@click.option("-R", "partitions", type=click.IntRange(min=0), default=None,
              show_default=f"{DEFAULT_PARTITIONS}; 0 when REDUCE is NONE",
              help="Number of reduce partitions; 0: a map-only job, one part per map task in input order.")
@click.option("--out", "out", type=click.Path(file_okay=False), help="Directory for the part files [./JOB.out].")
@click.option("--name", "name", help="Job name (part files are JOB.part<r>) [the map script's name].")
@click.option("-j", "--workers", type=click.IntRange(min=1), help="Worker processes [one per core].")
@click.option("--streaming", is_flag=True, help="Treat MAP and REDUCE as commands, even .py files.")
@click.option("--reader", type=click.Choice(READERS), default=None,
              show_default="the format `geryon load` recorded for the disks, else file",
              help="Records: whole file as text, one per line, whole file as bytes, mail message (mbox), "
                   "tar member, WARC record, or auto (by each file's extension). "
                   ".gz/.bz2/.xz/.zst files are read decompressed.")
@click.option("--skip-bad", "skip_bad", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Skip up to N malformed input records per map task (counted as geryon/skipped_records).")
@click.option("--total-order", "total_order", is_flag=True,
              help="Parts read in order are sorted: R-1 split points from a sample of the map output "
                   "(Hadoop's TotalOrderPartitioner).")
@click.option("--partitioner", type=click.Choice(PARTITIONERS), default="crc32", show_default=True,
              help="crc32 (fast), or geryon: Inferno Geryon's exact hash.")
@click.option("--combiner", "combiner", metavar="CMD",
              help="Streaming: a command run on each map task's sorted key<TAB>value lines, printing such "
                   "lines (Hadoop Streaming's -combiner; it may run any number of times).")
@click.option("--key-fields", "key_fields", type=int, default=1, show_default=True, metavar="N",
              help="Streaming: the first N tab-separated fields of a map's line are its key "
                   "(Hadoop's stream.num.map.output.key.fields).")
@click.option("--partition-fields", "partition_fields", type=int, default=None, metavar="M",
              help="Streaming: the first M (<= N) key fields choose the partition, the rest sort within it "
                   "(Hadoop's KeyFieldBasedPartitioner) [all N].")
@click.option("--partitioner-cmd", "partitioner_cmd", metavar="CMD",
              help="Streaming: a command given R as its argument, reading keys one per line and printing "
                   "each one's partition number 0..R-1, one per line (madoop's partitioner).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Part files as key<TAB>value text, or JSON fields (exact types).")
@click.option("--sort-budget", type=size_type, default=f"{DEFAULT_SORT_BUDGET >> 20}M", show_default=True,
              help="Memory per task for sorting before spilling to disk; a task's peak stays within it "
                   "plus 64M (what the map builds from one record on top).")
@click.option("--split-size", type=size_type, default=None,
              help="Input bytes per map task [from the input size: one task per worker at least, up to 128M].")
@click.option("-D", "defines", multiple=True, metavar="NAME=VALUE",
              help="A job parameter, read in the job with geryon.param(NAME) (repeatable; Hadoop's -D).")
@click.option("--cmdenv", "cmdenv", multiple=True, metavar="NAME=VALUE",
              help="An environment variable of every task, local or on any node (repeatable; Hadoop Streaming's).")
@click.option("--py-files", "py_files", multiple=True, type=click.Path(exists=True), metavar="PATH",
              help="A module or package to ship with the job, besides those its scripts import (repeatable).")
@click.option("--files", "files", multiple=True, type=click.Path(exists=True), metavar="PATH",
              help="A file to ship with the job beside its scripts (repeatable); dotfiles and other files "
                   "of the job's directory never travel unless named.")
@click.option("--workdir", type=click.Path(file_okay=False, exists=True),
              help="Where map outputs (the intermediate data) go [$TMPDIR].")
@ndb_option
@local_option
@registry_option
@secret_option
@click.option("--lease", type=click.FloatRange(min=0.5), default=DEFAULT_LEASE, show_default=True,
              help="Cluster: seconds a silent node keeps its tasks before they run elsewhere.")
@click.option("--pick", "pick", type=click.Choice(["rr", "load"]), default="rr", show_default=True,
              help="Cluster: after locality, offer tasks round robin or to the least busy cpu first.")
@click.option("--dask", "dask_scheduler", metavar="ADDRESS", envvar="GERYON_DASK_SCHEDULER",
              help="Run on a Dask cluster: its scheduler's address (tcp://HOST:8786) [$GERYON_DASK_SCHEDULER].")
@click.option("--dask-shuffle", "dask_shuffle", type=click.Choice(["auto", "disk", "transfer"]), default="auto",
              show_default=True, help="Dask mode: reducers read map outputs from the file when its worker is on "
                                      "their host, else over Dask's comms (auto), always from the file (disk: a "
                                      "shared filesystem), or always over Dask's comms (transfer).")
@click.option("--jobs-dir", "jobs_dir_opt", metavar="DIR", help="Where job records go [$GERYON_JOBS_DIR].")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
def mapreduce(map_step: str, reduce_step: str, disks: tuple[str, ...], partitions: int | None, out: str | None,
              name: str | None, workers: int | None, streaming: bool, reader: str | None, partitioner: str, fmt: str,
              sort_budget: int, split_size: int | None, workdir: str | None, ndb_file: str | None,
              quiet: bool, skip_bad: int = 0, force_local: bool = False, registry_url: str | None = None,
              secret_file: str | None = None, lease: float = 5.0, jobs_dir_opt: str | None = None,
              pick: str = "rr", defines: tuple[str, ...] = (), cmdenv: tuple[str, ...] = (),
              py_files: tuple[str, ...] = (), files: tuple[str, ...] = (),
              dask_scheduler: str | None = None, dask_shuffle: str = "auto", total_order: bool = False,
              combiner: str | None = None, key_fields: int = 1, partition_fields: int | None = None,
              partitioner_cmd: str | None = None) -> None:
    """Run MAP on every DISK, partition into R, sort and REDUCE each partition.

    MAP and REDUCE are Python scripts defining map(key, value) and reduce(key, values)
    (and optionally combine), or streaming commands reading stdin and writing
    key<TAB>value lines (an executable, or a command block such as '{ sort | uniq -c }').
    REDUCE NONE (or -R 0) makes a map-only job: one part per map task, in input order.
    A DISK is a directory or a disk name from the ndb file; on a cluster, a disk named in
    the cluster's ndb file or a geryon:// URL.

    geryon mapreduce JOB.py DISK... runs a multi-step job: JOB.py defines steps() returning
    (or STEPS, a list of) geryon.MRStep(mapper=..., combiner=..., reducer=..., partitions=R)
    (mapper_cmd=/reducer_cmd= for streaming steps); each step's output is the next one's input.
    """
    from geryon.mapreduce.api import run_job
    from geryon.cli.progress import LineProgress, RichProgress, summary_lines, summary_table

    try:
        params = dict(parse_assignment(d, "-D") for d in defines)
        task_vars = dict(parse_assignment(e, "--cmdenv") for e in cmdenv)
        for path in py_files:   # importable here as they will be in the pack
            add_import_path(os.path.dirname(os.path.abspath(path)))
        # the scripts load in this process: what they read at import time is what their tasks see
        os.environ.update(task_env(Job(map="true", params=params, cmdenv=task_vars)))
        steps = None if streaming else steps_from_script(map_step)
    except GeryonError as exc:
        fail(str(exc))
    if steps is not None:   # JOB.py DISK...: REDUCE is the first disk
        disks = (reduce_step, *disks)
        if partitions is not None:
            raise click.UsageError(f"{map_step} lists steps, each with its own R (MRStep(partitions=N)): drop -R")
        if total_order:
            raise click.UsageError(f"{map_step} lists steps: ask for total order in a step "
                                   f"(MRStep(total_order=True)), not with --total-order")
        given = [o for o, v in (("--combiner", combiner), ("--partitioner-cmd", partitioner_cmd),
                                ("--partition-fields", partition_fields)) if v is not None]
        if given or key_fields != 1:
            raise click.UsageError(f"{map_step} lists steps: {given[0] if given else '--key-fields'} is for "
                                   f"a single MAP REDUCE job")
    elif not disks:
        raise click.UsageError("Missing argument 'DISK...'.")
    try:
        if steps is not None:
            job = Job(steps=steps, name=name or _script_name(map_step), reader=reader or READER_OF_DISKS,
                      format=fmt, sort_budget=sort_budget, split_size=split_size, skip_bad=skip_bad,
                      params=params, cmdenv=task_vars, py_files=py_files, files=files)
            partitions = 0
        elif reduce_step == NO_REDUCE:   # Hadoop Streaming's `-reducer NONE`
            if partitions:
                fail(f"REDUCE is NONE, a map-only job: -R {partitions} has no reduce to run (drop -R)", 2)
            partitions = 0
        elif partitions == 0:
            fail(f"-R 0 is a map-only job, but REDUCE is {reduce_step}: give NONE as REDUCE", 2)
        if steps is None:
            _check_key_fields(key_fields, partition_fields)
            _check_partition_options(partitioner_cmd, partition_fields, partitioner, total_order)
            job = _single_job(map_step, reduce_step, partitions, streaming, name, reader, partitioner, fmt,
                              sort_budget, split_size, skip_bad, params, task_vars, py_files, files, total_order,
                              {"combiner": combiner, "key_fields": key_fields, "partition_fields": partition_fields,
                               "partitioner_cmd": partitioner_cmd})
            partitions = job.partitions
        disks = _expand_outputs(disks, jobs_dir_opt, force_local)
        dask = None if force_local else dask_scheduler
        if dask:
            if secret_file:   # geryon:// inputs are listed here with it (the workers find theirs)
                from geryon.disks.remote import set_default_secret

                set_default_secret(cluster_secret(secret_file))
        dask_registry = registry_url if dask else None   # in Dask mode: the registry naming geryon:// disks
        if registry_url and not force_local:
            check_local_ndb(ndb_file)
        problem = None if force_local or registry_url or dask else local_problem(disks, ndb_file)
        registry_url = None if dask else where(registry_url, secret_file, local=force_local, names_data=True,
                                               elsewhere=problem).registry
        if registry_url is not None:
            refuse_local_paths(disks)
    except GeryonError as exc:
        fail(str(exc))
    cluster = registry_url is not None
    tty = sys.stderr.isatty() and not quiet
    progress = None if quiet else (RichProgress() if tty else LineProgress())
    echo = progress.message if progress is not None else (lambda line: click.echo(line, err=True))
    record = _record(jobs_dir_opt, job, disks, partitions, "dask" if dask else "cluster" if cluster else "local")
    try:
        with showing(progress, "nothing committed"):
            try:
                if dask:
                    from geryon.mapreduce.daskcpu import run_dask_job

                    result = run_dask_job(job, list(disks), dask, out=out, ndb=ndb_file, progress=progress,
                                          record=record, echo=echo, shuffle=dask_shuffle, registry=dask_registry,
                                          job_id=record.job_id if record is not None else None)
                elif cluster:
                    result = _run_on_cluster(job, disks, registry_url, secret_file, out, progress, record, lease,
                                             problem, pick)
                else:
                    result = run_job(job, list(disks), out=out, workers=workers, ndb=ndb_file, progress=progress,
                                     workdir=workdir, record=record, echo=echo,
                                     job_id=record.job_id if record is not None else None)
            except UnknownDisk:
                if record is not None:   # the job never started: not a failed job
                    record.discard()
                    record = None
                raise
            except GeryonError as exc:
                if record is not None:
                    record.finish(JobState.FAILED, {"error": str(exc)})
                raise
            except KeyboardInterrupt:
                if record is not None:
                    record.finish(JobState.KILLED, {"error": "interrupted"})
                raise
        report = result.report
        if record is not None:
            record.finish(JobState.SUCCEEDED, {"parts": report.parts, "seconds": report.seconds, "output": report.out_dir,
                                        "urls": report.urls,
                                        "counters": report.counters, "shuffled": report.shuffled,
                                        **({"part_bytes": report.part_bytes} if report.part_bytes else {})})
    finally:
        if record is not None:
            record.close()
    if report.out_dir:
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


def _single_job(map_step: str, reduce_step: str, partitions: int, streaming: bool, name: str | None,
                reader: str | None, partitioner: str, fmt: str, sort_budget: int, split_size: int | None,
                skip_bad: int, params: dict[str, str], task_vars: dict[str, str], py_files: tuple[str, ...],
                files: tuple[str, ...], total_order: bool = False, stream: dict[str, Any] | None = None) -> Job:
    """The job of `geryon mapreduce MAP REDUCE`: its steps and hooks from the scripts, and `stream`'s
    Hadoop Streaming options (--combiner, --key-fields, --partition-fields, --partitioner-cmd)."""
    stream = stream or {}
    partitions = DEFAULT_PARTITIONS if partitions is None else partitions
    if total_order and partitions == 0:
        fail("--total-order sorts the reduce output: a map-only job (-R 0, REDUCE NONE) has none", 2)
    if total_order and partitioner != "crc32":
        fail(f"--total-order partitions by sampled key ranges: drop --partitioner {partitioner}", 2)
    map_s = step_from_arg(map_step, "map", streaming)
    reduce_s = None if partitions == 0 else step_from_arg(reduce_step, "reduce", streaming)
    if stream.get("combiner") is not None:   # Hadoop Streaming's -combiner: a command, whatever it is named
        combine_s = step_from_arg(stream["combiner"], "combiner", streaming=True)
    else:
        combine_s = None if streaming or partitions == 0 else (
            combine_from_script(reduce_step) or combine_from_script(map_step))
    hooks: dict = {} if streaming else hooks_from_script(map_step, "map")
    if stream.get("partitioner_cmd") is not None:
        hooks["partition_cmd"] = step_from_arg(stream["partitioner_cmd"], "partitioner", streaming=True)
    if reduce_s is not None and not streaming:   # the map side runs it: the map script's first
        part_s = partition_from_script(map_step) or partition_from_script(reduce_step)
        if part_s is not None and total_order:
            fail(f"--total-order partitions by sampled key ranges, but {os.path.basename(part_s.source or '')} "
                 f"defines partition(key, n): drop one", 2)
        if part_s is not None:
            hooks["partition"] = part_s
        if sort_values_of(reduce_step):
            hooks["sort_values"] = True
    if reduce_s is not None and not streaming:
        hooks.update(hooks_from_script(reduce_step, "reduce"))
    return Job(map=map_s, reduce=reduce_s, combine=combine_s, partitions=partitions, name=name or "",
               reader=reader or READER_OF_DISKS, partitioner=partitioner, format=fmt, sort_budget=sort_budget,
               split_size=split_size, env=(("GERYON_PARTITIONS", str(partitions)),), skip_bad=skip_bad,
               params=params, cmdenv=task_vars, py_files=py_files, files=files, total_order=total_order,
               key_fields=stream.get("key_fields", 1), partition_fields=stream.get("partition_fields"), **hooks)


def _check_partition_options(partitioner_cmd: str | None, partition_fields: int | None, partitioner: str,
                             total_order: bool) -> None:
    """One way to choose partitions: --partitioner-cmd, --partition-fields and --total-order exclude each
    other (and --partitioner-cmd a --partitioner hash), else a usage error (exit 2)."""
    if total_order and (partitioner_cmd is not None or partition_fields is not None):
        fail("--total-order partitions by sampled key ranges: drop "
             + ("--partitioner-cmd" if partitioner_cmd is not None else "--partition-fields"), 2)
    if partitioner_cmd is not None and partition_fields is not None:
        fail("--partitioner-cmd chooses the partition: drop --partition-fields", 2)
    if partitioner_cmd is not None and partitioner != "crc32":
        fail(f"--partitioner-cmd chooses the partition: drop --partitioner {partitioner}", 2)


def _check_key_fields(key_fields: int, partition_fields: int | None) -> None:
    """--key-fields N >= 1 and --partition-fields M in 1..N, else a usage error (exit 2)."""
    if key_fields < 1:
        fail(f"--key-fields must be 1 or more (the key is the first N fields), not {key_fields}", 2)
    if partition_fields is not None and not 1 <= partition_fields <= key_fields:
        fail(f"--partition-fields must be 1..{key_fields} (at most --key-fields {key_fields}), "
             f"not {partition_fields}", 2)


def _script_name(path: str) -> str:
    """A multi-step job's default name: its script's stem."""
    from geryon.mapreduce.job import default_name
    from geryon.mapreduce.job import Step

    return default_name(Step(command="x", source=os.path.abspath(path)))


def _expand_outputs(disks: tuple[str, ...], jobs_dir_opt: str | None, force_local: bool) -> tuple[str, ...]:
    """Each `geryon-output-of-JOB` DISK replaced by where that job's output is (from the job's
    record): a cluster job's part URLs on the nodes (unless --local), else its local output
    directory."""
    from geryon.disks.outputs import output_job

    if not any(output_job(d) for d in disks):
        return disks
    from geryon.cli.jobs import jobs_dir
    from geryon.mapreduce.jobstore import JobStore

    store = JobStore(jobs_dir(jobs_dir_opt))
    out: list[str] = []
    for disk in disks:
        job = output_job(disk)
        if job is None:
            out.append(disk)
            continue
        try:
            record = store.read(job)
        except GeryonError as exc:
            raise UnknownDisk(f"{disk}: {exc}") from exc
        summary = record.get("summary") or {}
        from geryon.mapreduce.joboutput import removed

        if removed(store.root, record["id"]):
            raise UnknownDisk(f"{disk}: the output of job {record['id']} was removed (geryon rm)")
        if record.get("state") != JobState.SUCCEEDED:
            raise UnknownDisk(f"{disk}: job {record['id']} has no output (it {record.get('state')})")
        where, urls = summary.get("output") or "", [str(p) for p in summary.get("urls") or []]
        if urls and not (force_local and where and os.path.isdir(where)):
            # one disk per node directory holding parts: geryon://host:port/CHUNK/JOB
            out.extend(dict.fromkeys(u.rsplit("/", 1)[0] for u in urls))
        elif where and os.path.isdir(where):
            out.append(where)
        else:
            raise UnknownDisk(f"{disk}: the output of job {record['id']} is gone (removed with `geryon rm`?)")
    return tuple(out)


def _record(jobs_dir_opt: str | None, job: Job, disks: tuple[str, ...], partitions: int, mode: str) -> Any:
    """The job's metadata record (`geryon jobs`), or None if the jobs directory is unusable."""
    import time

    from geryon.mapreduce.engine import new_job_id

    try:
        from geryon.cli.jobs import jobs_dir
        from geryon.mapreduce.jobstore import JobStore

        store = JobStore(jobs_dir(jobs_dir_opt))
        info: dict[str, Any] = {"name": job.name, "mode": mode, "argv": sys.argv, "disks": list(disks),
                                "partitions": partitions, "cpus": [], "started": time.time(),
                                "params": dict(job.params), "cmdenv": dict(job.cmdenv)}
        if job.multi_step:
            info["steps"] = job.describe_steps()
        else:
            info.update({"map": job.map.describe() if job.map else "",
                         "reduce": job.reduce.describe() if job.reduce else ""})
        return store.begin(new_job_id(job.name), info)
    except (ImportError, OSError, GeryonError) as exc:
        click.echo(f"geryon: warning: job not recorded: {exc}", err=True)
        return None


def _run_on_cluster(job: Job, disks: tuple[str, ...], registry_url: str | None, secret_file: str | None,
                    out: str | None, progress: Any, record: Any, lease: float, problem: str | None,
                    pick: str) -> Any:
    from geryon.mapreduce.api import run_cluster_job
    from registry.errors import RegistryError

    echo = progress.message if progress is not None else (lambda line: click.echo(line, err=True))
    try:
        secret = cluster_secret(secret_file)
        with registry_client(registry_url, secret, owner="mapreduce") as registry:
            return run_cluster_job(job, list(disks), registry, secret, out=out, progress=progress, record=record,
                                   lease=lease, echo=echo, job_id=record.job_id if record is not None else None,
                                   pick=pick)
    except RegistryError as exc:
        if problem is not None:  # looked for a cluster only because a disk is not local
            raise GeryonError(f"{problem}; and no cluster to run on: {exc}") from exc
        raise GeryonError(f"registry: {exc}") from exc


def _shown(path: str) -> str:
    if "://" in path:
        return path
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


NO_REDUCE = "NONE"
"""REDUCE meaning a map-only job (Hadoop Streaming's `-reducer NONE`)."""

commands: list[click.Command] = [mapreduce]
