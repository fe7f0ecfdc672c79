"""What a job is: map, reduce and combine steps and the settings they run with; a multi-step job's
steps (mrjob's `MRStep`, `steps()`).

A Python step is a function: `map(key, value)`, `reduce(key, values)`,
`combine(key, values)`. A streaming step is a command (an executable, an argv, or a shell
command block `{ ... }`) that reads records on stdin and writes `key<TAB>value` lines, the
Hadoop Streaming rules. Steps and the scripts they come from: `geryon.mapreduce.jobscript` (its
names are re-exported here); what a job's settings must satisfy: `geryon.mapreduce.jobcheck`.
Running steps is not done here (see `maptask`, `reducetask`).
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from geryon.errors import JobDefinitionError
from geryon.defaults import DEFAULT_PARTITIONS, DEFAULT_SORT_BUDGET, DEFAULT_SPLIT_SIZE
from geryon.mapreduce.jobcheck import (HOOKS, READER_OF_DISKS, READERS, STEP_READERS, check_hooks, check_multi,
                                       check_single, check_steps, disks_reader)
from geryon.mapreduce.jobscript import (Step, add_import_path, as_step, combine_from_script, command_argv,
                                        default_name, hook_pairs, hooks_from_script, identity_map, is_python_script,
                                        is_sum, load_script, partition_from_script, sort_values_of, step_from_arg)

log = logging.getLogger(__name__)


_runner: list[Callable[..., Any]] = []
"""What `Job.run` calls: `geryon.mapreduce.api.run_by_rule`, installed by that module (which
`geryon.mapreduce`'s `__init__` imports), so that the value type does not import the engine that runs it."""


def set_runner(run: Callable[..., Any]) -> None:
    """Install the function `Job.run` calls (`geryon.mapreduce.api` does, once)."""
    _runner[:] = [run]


@dataclass(frozen=True)
class Job:
    """A MapReduce job: its steps and settings.

    `map`, `reduce` and `combine` may be functions, commands (str or argv tuple) or Steps.
    Example: `Job(map=wordmap, reduce=total, combine=total, partitions=3).run(["d0.mbox"])`.

    A multi-step job (mrjob's `steps()`) is `Job(steps=[...])` (or `Steps(...)`): each step a Job
    (or `MRStep(...)`) giving its map, combine, reduce, R, partitioner, hooks and sort_values; the
    rest (name, reader, output format, budgets, parameters, files) is the multi-step job's.
    """

    map: Step | None = None
    reduce: Step | None = None
    combine: Step | None = None
    partitions: int = DEFAULT_PARTITIONS  # R; 0: a map-only job (one part per map task, in input order)
    name: str = ""
    reader: str = "file"
    partitioner: str = "crc32"
    format: str = "json"
    sort_budget: int = DEFAULT_SORT_BUDGET
    split_size: int | None = None  # None: chosen from the input size and the slots
    env: tuple[tuple[str, str], ...] = field(default=())
    skip_bad: int = 0  # malformed input records a map task may skip (counted), Hadoop's skip mode
    params: Any = ()   # job parameters (`-D name=value`): a mapping, or (name, value) pairs; see geryon.param
    cmdenv: Any = ()   # environment of every task (`--cmdenv NAME=VALUE`): a mapping, or pairs
    files: tuple[str, ...] = ()     # other files that travel with the job (`--files`)
    py_files: tuple[str, ...] = ()  # modules that travel whatever import analysis finds (`--py-files`)
    # mrjob's per-task hooks: called with no arguments once per map (reduce) task, before its
    # first record (key) and after its last; each may return or yield (key, value) pairs
    map_init: Step | None = None
    map_final: Step | None = None
    reduce_init: Step | None = None
    reduce_final: Step | None = None
    # the job's own partitioner, `partition(key, n) -> r` (Spark's partitionBy; checked per key)
    partition: Step | None = None
    # mrjob's SORT_VALUES: each key's values reach reduce sorted (a group is then held in memory)
    sort_values: bool = False
    # Hadoop's TotalOrderPartitioner: keys sampled before the maps run pick R - 1 split points,
    # so the parts read in order are sorted (`geryon.mapreduce.totalorder`)
    total_order: bool = False
    # a multi-step job: its steps, run one after the other, each one's output the next one's input
    steps: Any = None
    # Hadoop Streaming's key fields: the first `key_fields` tab-separated fields of a streaming map's
    # line are its key (stream.num.map.output.key.fields), the first `partition_fields` of those
    # choose its partition (KeyFieldBasedPartitioner; None: all of them)
    key_fields: int = 1
    partition_fields: int | None = None
    # a command choosing each key's partition (madoop's partitioner): keys in, one per line;
    # one partition number per key out
    partition_cmd: Step | None = None

    def __post_init__(self) -> None:
        if self.steps is not None:
            object.__setattr__(self, "steps", check_steps(self, Job))
            self._normalise_shared()
            if not self.name:
                object.__setattr__(self, "name", self.steps[0].name)
            check_multi(self)
            return
        for attr in ("map", "reduce", "combine", "partition", "partition_cmd", *HOOKS):
            object.__setattr__(self, attr, as_step(getattr(self, attr), attr))
        if self.map is None:
            raise JobDefinitionError("a job needs a map step")
        check_hooks(self)
        self._normalise_shared()
        if not self.name:
            object.__setattr__(self, "name", default_name(self.map))
        check_single(self)

    def _normalise_shared(self) -> None:
        """What a job and a multi-step job alike carry to every task: parameters and task
        environment as sorted (name, value) pairs, extra files as a tuple of paths."""
        for attr in ("params", "cmdenv"):
            object.__setattr__(self, attr, _pairs(getattr(self, attr), attr))
        for attr in ("files", "py_files"):
            value = getattr(self, attr)
            object.__setattr__(self, attr, (value,) if isinstance(value, str) else tuple(str(v) for v in value))

    @property
    def partition_key_fields(self) -> int:
        """How many of the key's fields choose its partition (`partition_fields`, else all)."""
        return self.key_fields if self.partition_fields is None else self.partition_fields

    @property
    def multi_step(self) -> bool:
        """A job of several steps (`steps`), run by `geryon.mapreduce.steps`."""
        return self.steps is not None

    def describe_steps(self) -> list[str]:
        """One line per step: its map, combine and reduce, and R."""
        lines = []
        for step in self.steps or (self,):
            what = [f"map {step.map.describe()}" if step.map is not None else "map (identity)"]
            if step.combine is not None:
                what.append(f"combine {step.combine.describe()}")
            if step.map_only:
                what.append("no reduce")
            else:
                what.append(f"reduce {step.reduce.describe() if step.reduce else '(identity)'}")
                what.append(f"R={step.partitions}")
            lines.append(", ".join(what))
        return lines

    @property
    def map_only(self) -> bool:
        """No reduce (`partitions == 0`): one part per map task, its output in input order."""
        return self.partitions == 0

    @property
    def sum_reduce(self) -> bool:
        """The reduce is exactly `return sum(values)` and nothing else runs in a reduce task: the
        engine may aggregate in a dict (and map outputs need not be sorted)."""
        return (is_sum(self.reduce) and self.reduce_init is None and self.reduce_final is None
                and not self.sort_values)

    def run(self, disks: Sequence[Any], out: str | None = None, workers: int | None = None,
            ndb: str | None = None, progress: Any = None, workdir: str | None = None,
            registry: Any = None, secret: bytes | None = None, local: bool = False, dask: Any = None) -> Any:
        """Run the job on `disks` (paths, disk names or Disks) in local mode, or on a cluster's
        cpus (disks named in its ndb file; its functions must live in script files: they
        travel as files, never pickled).

        Where, by the rule every verb follows (`geryon.cluster.where`): `local=True` here; a `registry`
        (a RegistryClient or URL) or $GERYON_REGISTRY: its cluster; every disk on this machine:
        here; else a registry found over zeroconf.

        With `dask` (a `distributed.Client` or a scheduler address such as
        "tcp://host:8786"), the job runs on that Dask cluster's workers
        (`geryon.mapreduce.daskcpu`; the disks must be paths the workers see).

        Returns a JobResult: iterate it for (key, value) pairs in partition then key order.
        """
        return _runner[0](self, disks, out=out, workers=workers, ndb=ndb, progress=progress, workdir=workdir,
                           registry=registry, secret=secret, local=local, dask=dask)

    def fingerprint(self) -> str:
        """A short content hash of the job's scripts and settings (job packs, job ids)."""
        h = hashlib.sha256()
        for step in (self.map, self.reduce, self.combine):
            if step is None:
                h.update(b"-")
            elif step.source and os.path.exists(step.source):
                with open(step.source, "rb") as f:
                    h.update(f.read())
            else:
                h.update(step.describe().encode())
        h.update(repr((self.partitions, self.reader, self.partitioner, self.format)).encode())
        if self.key_fields != 1 or self.partition_fields is not None or self.partition_cmd is not None:
            cmd = self.partition_cmd.describe() if self.partition_cmd is not None else None
            h.update(repr((self.key_fields, self.partition_fields, cmd)).encode())
        return h.hexdigest()[:12]


def MRStep(mapper: Any = None, reducer: Any = None, combiner: Any = None, *, mapper_init: Any = None,
           mapper_final: Any = None, reducer_init: Any = None, reducer_final: Any = None,
           mapper_cmd: str | None = None, reducer_cmd: str | None = None, combiner_cmd: str | None = None,
           partitions: int | None = None, partition: Any = None, partitioner: str = "crc32",
           sort_values: bool = False, total_order: bool = False, key_fields: int = 1,
           partition_fields: int | None = None, partitioner_cmd: Any = None) -> Job:
    """One step of a multi-step job, by mrjob's names (`mrjob.step.MRStep`): a Job.

    No mapper: each record goes to the reducer as it is. No reducer: a map-only step (one part
    per map task, in input order), unless `partitions` asks for an identity reduce.
    `partitions` is the step's R (default: 5 with a reducer). The step's own partitioning and
    order, as a `Job` has them: `partition(key, n)` (a Python map), `sort_values`,
    `total_order`, `partitioner` (a hash name); for a streaming mapper_cmd, Hadoop's
    `key_fields` and `partition_fields` (--key-fields, --partition-fields) and
    `partitioner_cmd` (--partitioner-cmd, Job's `partition_cmd`).

    Raises:
        JobDefinitionError: a function and a command given for one role, or a bad setting.
    """
    for func, cmd, role in ((mapper, mapper_cmd, "mapper"), (reducer, reducer_cmd, "reducer"),
                            (combiner, combiner_cmd, "combiner")):
        if func is not None and cmd is not None:
            raise JobDefinitionError(f"a step has {role} and {role}_cmd: give one")
    map_ = mapper if mapper is not None else mapper_cmd
    reduce_ = reducer if reducer is not None else reducer_cmd
    if partitions is None:
        partitions = DEFAULT_PARTITIONS if reduce_ is not None else 0
    return Job(map=map_ if map_ is not None else identity_map, reduce=reduce_,
               combine=combiner if combiner is not None else combiner_cmd, partitions=partitions,
               partition=partition, partitioner=partitioner, sort_values=sort_values, total_order=total_order,
               key_fields=key_fields, partition_fields=partition_fields, partition_cmd=partitioner_cmd,
               map_init=mapper_init,
               map_final=mapper_final, reduce_init=reducer_init, reduce_final=reducer_final)


def Steps(*steps: Any, **settings: Any) -> Job:
    """A multi-step job: `Steps(MRStep(...), MRStep(...), name="top", format="json").run(disks)`,
    which is `Job(steps=[...], ...)`."""
    if len(steps) == 1 and not isinstance(steps[0], Job) and hasattr(steps[0], "__iter__"):
        steps = tuple(steps[0])
    return Job(steps=steps, **settings)


def steps_from_script(path: str) -> tuple[Job, ...] | None:
    """The steps a Python job script lists: `steps()` returning them, or a `STEPS` list (None: it
    lists none, it is a map or reduce script).

    Raises:
        JobDefinitionError: one line naming the script: `steps()` raised, or what it lists is
            empty or not steps.
    """
    if not path.endswith(".py") or not os.path.isfile(path):
        return None
    module = load_script(path)
    name = os.path.basename(path)
    found = getattr(module, "steps", None)
    if callable(found):
        try:
            listed = found()
        except Exception as exc:
            raise JobDefinitionError(f"{name}: steps() raised {type(exc).__name__}: {exc}") from exc
        what = "steps()"
    elif hasattr(module, "STEPS"):
        listed, what = module.STEPS, "STEPS"
    else:
        return None
    try:
        return Job(steps=listed, name="x").steps  # type: ignore[no-any-return]
    except JobDefinitionError as exc:
        raise JobDefinitionError(f"{name}: {what}: {exc}") from None


def _pairs(value: Any, what: str) -> tuple[tuple[str, str], ...]:
    """A mapping or (name, value) pairs as sorted pairs of str (params, cmdenv)."""
    items = value.items() if hasattr(value, "items") else value
    try:
        pairs = {str(k): str(v) for k, v in items}
    except (TypeError, ValueError) as exc:
        raise JobDefinitionError(f"{what} must be a mapping of names to values") from exc
    for name in pairs:
        if not name or "=" in name or "\0" in name:
            raise JobDefinitionError(f"bad {what} name {name!r}")
    return tuple(sorted(pairs.items()))


def parse_assignment(text: str, what: str) -> tuple[str, str]:
    """`NAME=VALUE` (a -D or --cmdenv argument) as a pair."""
    name, eq, value = text.partition("=")
    if not eq or not name.strip():
        raise JobDefinitionError(f"{what} wants NAME=VALUE, not {text!r}")
    return name.strip(), value



__all__ = ["DEFAULT_PARTITIONS", "DEFAULT_SORT_BUDGET", "DEFAULT_SPLIT_SIZE", "HOOKS", "READERS", "READER_OF_DISKS",
           "STEP_READERS", "Job", "MRStep", "Step", "Steps", "add_import_path", "as_step", "combine_from_script",
           "command_argv", "default_name", "disks_reader", "hook_pairs", "hooks_from_script", "identity_map",
           "is_python_script", "is_sum", "load_script", "parse_assignment", "partition_from_script", "set_runner",
           "sort_values_of", "step_from_arg", "steps_from_script"]
