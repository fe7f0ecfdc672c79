"""What a job is: map, reduce and combine steps, as Python functions or commands.

A Python step is a function: `map(key, value)`, `reduce(key, values)`,
`combine(key, values)`. A streaming step is a command (an executable, an argv, or a shell
command block `{ ... }`) that reads records on stdin and writes `key<TAB>value` lines, the
Hadoop Streaming rules. Scripts are loaded from files, so that the same job can travel to
another machine as files (never pickled). Running steps is not done here (see `maptask`,
`reducetask`).
"""
from __future__ import annotations

import builtins
import hashlib
import importlib.util
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from geryon.mapreduce.codec import FORMATS, PAIRS
from geryon.errors import JobDefinitionError
from geryon.mapreduce.partition import PARTITIONERS
from geryon.defaults import DEFAULT_PARTITIONS, DEFAULT_SORT_BUDGET, DEFAULT_SPLIT_SIZE

log = logging.getLogger(__name__)

READERS = ("file", "lines", "bytes", "mbox", "tar", "warc", "auto")
"""Record readers (see `geryon.records.readers`): whole file as text (default), one record per line,
whole file as bytes, mail message, tar member, WARC record, or chosen per file by extension."""

STEP_READERS = ("pairs", "keyvalue")
"""Readers of the parts one step of a multi-step job writes for the next (`geryon.mapreduce.steps`):
never a `--reader` choice."""

READER_OF_DISKS = ""
"""`Job.reader` meaning: the record format the input disks recorded when loaded (ndb `format=`),
else `file` (what `geryon mapreduce` does without --reader)."""


def disks_reader(reader: str, formats: Sequence[tuple[str, str]]) -> str:
    """The reader a job uses: `reader` if named, else the one its disks' recorded formats agree on.

    Args:
        formats: (disk name, recorded format or "") of every input disk.
    Raises:
        JobDefinitionError: the disks recorded different formats (one line naming two of them).
    """
    if reader != READER_OF_DISKS:
        return reader
    seen: dict[str, str] = {}
    for name, fmt in formats:
        seen.setdefault(fmt if fmt in READERS else "file", name)
    if len(seen) > 1:
        (a, da), (b, db) = list(seen.items())[:2]
        raise JobDefinitionError(f"the input disks hold different records ({da}: {a}, {db}: {b}): "
                                 f"name one reader with --reader")
    return next(iter(seen), "file")


_runner: list[Callable[..., Any]] = []
"""What `Job.run` calls: `geryon.mapreduce.api.run_by_rule`, installed by that module (which
`geryon.mapreduce`'s `__init__` imports), so that the value type does not import the engine that runs it."""


def set_runner(run: Callable[..., Any]) -> None:
    """Install the function `Job.run` calls (`geryon.mapreduce.api` does, once)."""
    _runner[:] = [run]


@dataclass(frozen=True)
class Step:
    """One step of a job: a Python function, or a command for streaming."""

    func: Callable[..., Any] | None = None
    command: str | tuple[str, ...] | None = None
    source: str | None = None  # the script it came from, for messages and job packs

    @property
    def streaming(self) -> bool:
        return self.command is not None

    def describe(self) -> str:
        if self.command is not None:
            return self.command if isinstance(self.command, str) else shlex.join(self.command)
        name = getattr(self.func, "__qualname__", repr(self.func))
        return f"{self.source}:{name}" if self.source else name


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
            self._check_steps()
            return
        for attr in ("map", "reduce", "combine", "partition", "partition_cmd", *HOOKS):
            object.__setattr__(self, attr, as_step(getattr(self, attr), attr))
        if self.map is None:
            raise JobDefinitionError("a job needs a map step")
        for attr in HOOKS:
            hook = getattr(self, attr)
            if hook is not None and hook.streaming:
                raise JobDefinitionError(f"{attr} must be a Python function, not a command")
            owner = self.map if attr.startswith("map") else self.reduce
            if hook is not None and owner is not None and owner.streaming:
                raise JobDefinitionError(f"{attr} is for a Python {attr.split('_')[0]}: a streaming command "
                                         f"does its own set-up and tear-down")
        self._normalise_shared()
        if not self.name:
            object.__setattr__(self, "name", default_name(self.map))
        if self.partitions < 0:
            raise JobDefinitionError(f"partitions must be 0 (a map-only job) or more, not {self.partitions}")
        if self.map_only and self.reduce is not None:
            raise JobDefinitionError(f"a map-only job (-R 0) runs no reduce, but one is given: "
                                     f"{self.reduce.describe()} (give NONE as the reducer)")
        if self.map_only and self.combine is not None:
            raise JobDefinitionError("a map-only job (-R 0) runs no combiner")
        if self.partition is not None and self.partition.streaming:
            raise JobDefinitionError("partition must be a Python function partition(key, n)")
        if self.partition is not None and self.map.streaming:
            raise JobDefinitionError("partition is for a Python map (streaming jobs: --partitioner-cmd)")
        if not isinstance(self.sort_values, bool):
            raise JobDefinitionError(f"sort_values must be True or False, not {self.sort_values!r}")
        if not isinstance(self.total_order, bool):
            raise JobDefinitionError(f"total_order must be True or False, not {self.total_order!r}")
        if self.total_order and self.map_only:
            raise JobDefinitionError("a total-order job sorts its reduce output: a map-only job (-R 0) has none")
        if self.total_order and self.partition is not None:
            raise JobDefinitionError("a total-order job partitions by sampled key ranges: drop its partition function")
        if self.total_order and self.partitioner != "crc32":
            raise JobDefinitionError(f"a total-order job partitions by sampled key ranges, not by the "
                                     f"{self.partitioner} hash: drop --partitioner")
        if self.map_only and self.sort_values:
            raise JobDefinitionError("a map-only job (-R 0) has no reduce to sort values for")
        if self.map_only and self.partition is not None:
            raise JobDefinitionError("a map-only job (-R 0) has no partitions to choose: drop partition")
        if self.map_only and (self.reduce_init or self.reduce_final):
            raise JobDefinitionError("a map-only job (-R 0) runs no reduce_init or reduce_final")
        if self.reader not in READERS and self.reader not in STEP_READERS and self.reader != READER_OF_DISKS:
            raise JobDefinitionError(f"unknown reader {self.reader!r} (choose from {', '.join(READERS)})")
        if self.partitioner not in PARTITIONERS:
            raise JobDefinitionError(f"unknown partitioner {self.partitioner!r} (choose from {', '.join(PARTITIONERS)})")
        if self.format not in FORMATS and self.format != PAIRS:
            raise JobDefinitionError(f"unknown output format {self.format!r} (choose from {', '.join(FORMATS)})")
        if self.sort_budget < 1 << 20:
            raise JobDefinitionError("the sort budget must be at least 1 MiB")
        if self.split_size is not None and self.split_size < 1:
            raise JobDefinitionError("the split size must be positive")
        if self.skip_bad < 0:
            raise JobDefinitionError(f"skip_bad must not be negative, not {self.skip_bad}")
        if self.combine is not None and self.combine.streaming and not self.map.streaming:
            raise JobDefinitionError(f"the combiner {self.combine.describe()} is a command, which reads and writes "
                                     f"text lines: it needs a streaming map (a Python map: combine(key, values))")
        self._check_key_fields()

    def _check_key_fields(self) -> None:
        """Key fields and a partitioner command are for a streaming map's lines (Hadoop Streaming's)."""
        n, m = self.key_fields, self.partition_fields
        if type(n) is not int or n < 1:
            raise JobDefinitionError(f"key_fields must be 1 or more, not {n!r}")
        if m is not None and (type(m) is not int or not 1 <= m <= n):
            raise JobDefinitionError(f"partition_fields must be 1..{n} (the key's fields), not {m!r}")
        cmd = self.partition_cmd
        if cmd is not None and not cmd.streaming:
            raise JobDefinitionError("partition_cmd must be a command (a Python map: partition(key, n))")
        if not self.map.streaming and (n != 1 or m is not None or cmd is not None):
            what = "partition_cmd" if cmd is not None else "key_fields" if n != 1 else "partition_fields"
            raise JobDefinitionError(f"{what} is for a streaming map's lines: a Python map yields its keys "
                                     f"(and may define partition(key, n))")
        if self.map_only and (n != 1 or m is not None or cmd is not None):
            raise JobDefinitionError("a map-only job (-R 0) has no keys to sort or partition: drop "
                                     + ("the partitioner command" if cmd is not None else "the key fields"))
        if cmd is not None and m is not None:
            raise JobDefinitionError("the partitioner command chooses the partition: drop partition_fields")
        if self.total_order and (cmd is not None or m is not None):
            raise JobDefinitionError("a total-order job partitions by sampled key ranges: drop "
                                     + ("the partitioner command" if cmd is not None else "partition_fields"))
        if cmd is not None and self.partitioner != "crc32":
            raise JobDefinitionError(f"the partitioner command chooses the partition: drop --partitioner "
                                     f"{self.partitioner}")

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

    def _check_steps(self) -> None:
        """A multi-step job: a non-empty list of single-step Jobs, and nothing of its own to run."""
        if isinstance(self.steps, (str, bytes)) or not hasattr(self.steps, "__iter__"):
            raise JobDefinitionError(f"steps must be a list of steps (MRStep or Job), not {self.steps!r}")
        steps = tuple(self.steps)
        if not steps:
            raise JobDefinitionError("a multi-step job needs at least one step (its steps list is empty)")
        for i, step in enumerate(steps, 1):
            if not isinstance(step, Job):
                raise JobDefinitionError(f"step {i} is not a step (MRStep or Job): {step!r}")
            if step.steps is not None:
                raise JobDefinitionError(f"step {i} is itself a multi-step job: list its steps instead")
        object.__setattr__(self, "steps", steps)
        own = [a for a in ("map", "reduce", "combine", "partition", "partition_cmd", *HOOKS) if getattr(self, a) is not None]
        if self.total_order:
            own.append("total_order")
        if own:
            raise JobDefinitionError(f"a multi-step job runs its steps: give {own[0]} in a step, not beside steps")
        self._normalise_shared()
        if not self.name:
            object.__setattr__(self, "name", steps[0].name)
        if self.reader not in READERS and self.reader != READER_OF_DISKS:
            raise JobDefinitionError(f"unknown reader {self.reader!r} (choose from {', '.join(READERS)})")
        if self.format not in FORMATS:
            raise JobDefinitionError(f"unknown output format {self.format!r} (choose from {', '.join(FORMATS)})")
        if self.sort_budget < 1 << 20:
            raise JobDefinitionError("the sort budget must be at least 1 MiB")
        if self.split_size is not None and self.split_size < 1:
            raise JobDefinitionError("the split size must be positive")

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


HOOKS = ("map_init", "map_final", "reduce_init", "reduce_final")
"""A job's per-task hooks (mrjob's mapper_init ... reducer_final)."""


def identity_map(key: Any, value: Any) -> Iterator[tuple[Any, Any]]:
    """The map of a step that names none (mrjob's reducer-only step): each record as it is."""
    yield key, value


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


def hooks_from_script(path: str, side: str) -> dict[str, Step]:
    """The hooks a Python script defines for `side` ("map" or "reduce"): `map_init` and
    `map_final` (or mrjob's `mapper_init`, `mapper_final`), or `reduce_init` and `reduce_final`
    (`reducer_init`, `reducer_final`)."""
    if not path.endswith(".py") or not os.path.isfile(path):
        return {}
    module = load_script(path)
    found: dict[str, Step] = {}
    for when in ("init", "final"):
        names = (f"{side}_{when}", f"{side}per_{when}" if side == "map" else f"{side}r_{when}")
        for name in names:
            func = getattr(module, name, None)
            if callable(func):
                found[f"{side}_{when}"] = Step(func=func, source=os.path.abspath(path))
                break
    return found


def partition_from_script(path: str) -> Step | None:
    """The `partition(key, n)` function of a Python script, if it defines one."""
    if not path.endswith(".py") or not os.path.isfile(path):
        return None
    func = getattr(load_script(path), "partition", None)
    return Step(func=func, source=os.path.abspath(path)) if callable(func) else None


def sort_values_of(path: str) -> bool:
    """Whether a Python reduce script asks for sorted values: `sort_values = True` (or mrjob's
    `SORT_VALUES = True`)."""
    if not path.endswith(".py") or not os.path.isfile(path):
        return False
    module = load_script(path)
    for name in ("sort_values", "SORT_VALUES"):
        value = getattr(module, name, None)
        if value is not None and not isinstance(value, bool):
            raise JobDefinitionError(f"{os.path.basename(path)}: {name} must be True or False, not {value!r}")
        if value is not None:
            return value
    return False


def hook_pairs(result: Any, hook: str) -> Iterator[tuple[Any, Any]]:
    """What a hook returned (None, a mapping, or an iterable of pairs), pair by pair.

    Raises:
        JobDefinitionError: it is not iterable, or an item is not a (key, value) pair.
    """
    if result is None:
        return
    items = result.items() if hasattr(result, "items") else result
    try:
        it = iter(items)
    except TypeError:
        raise JobDefinitionError(f"{hook} must return or yield (key, value) pairs, got {result!r}") from None
    for pair in it:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise JobDefinitionError(f"{hook} must yield (key, value) pairs, got {pair!r}")
        yield pair[0], pair[1]


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


def as_step(obj: Any, kind: str) -> Step | None:
    """Normalise a job argument (function, command, argv or Step) to a Step."""
    if obj is None or isinstance(obj, Step):
        return obj
    if callable(obj):
        return Step(func=obj)
    if isinstance(obj, str):
        return Step(command=obj)
    if isinstance(obj, (list, tuple)) and all(isinstance(a, str) for a in obj):
        return Step(command=tuple(obj))
    raise JobDefinitionError(f"{kind} must be a function or a command, not {type(obj).__name__}")


def default_name(step: Step) -> str:
    """A job's name from its map step: the script's folder for `map.py`, else its stem."""
    if step.source:
        stem = os.path.splitext(os.path.basename(step.source))[0]
        if stem in ("map", "mapper"):
            stem = os.path.basename(os.path.dirname(step.source)) or stem
        return _safe_name(stem)
    if step.func is not None:
        return _safe_name(getattr(step.func, "__name__", "job"))
    return "job"


def _safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.+-" else "_" for c in text).lstrip(".")
    return cleaned or "job"


def load_script(path: str) -> ModuleType:
    """Import a job script from a file path, under a name of its own."""
    if not os.path.isfile(path):
        raise JobDefinitionError(f"{path}: no such script")
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]
    name = f"geryon_job_{os.path.splitext(os.path.basename(path))[0]}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise JobDefinitionError(f"{path}: cannot be loaded as a Python script")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    directory = os.path.dirname(os.path.abspath(path))
    # As `python map.py` does: the script's directory comes first while it loads, so its
    # helper modules are found (locally and in a job pack alike); afterwards it stays on
    # the path, last, for imports made inside the job's functions.
    sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise JobDefinitionError(f"{path}: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(directory)
        add_import_path(directory)
    return module


def add_import_path(directory: str) -> None:
    """Put `directory` on sys.path (at the end) unless it is there already."""
    directory = os.path.abspath(directory)
    if directory not in sys.path:
        sys.path.append(directory)


def is_python_script(arg: str) -> bool:
    """A step argument names a Python script when it is an existing `.py` file."""
    return arg.endswith(".py") and os.path.isfile(arg)


def step_from_arg(arg: str, kind: str, streaming: bool = False) -> Step:
    """Build a step from a CLI argument: `file.py`, an executable, or a command block."""
    if not streaming and arg.endswith(".py"):
        if not os.path.isfile(arg):
            raise JobDefinitionError(f"{arg}: no such script")
        module = load_script(arg)
        func = getattr(module, kind, None)
        if func is None and kind == "map":
            func = getattr(module, "mapper", None)
        if func is None and kind == "reduce":
            func = getattr(module, "reducer", None)
        if not callable(func):
            raise JobDefinitionError(f"{arg}: defines no function {kind}(key, {'value' if kind == 'map' else 'values'})")
        return Step(func=func, source=os.path.abspath(arg))
    command = arg.strip()
    if command.startswith("{") and command.endswith("}"):
        command = command[1:-1].strip()  # an Inferno-style command block: run by sh
    elif os.path.isfile(arg):
        if not os.access(arg, os.X_OK):
            raise JobDefinitionError(f"{arg}: not executable (chmod +x, or give a .py script)")
        return Step(command=(os.path.abspath(arg),), source=os.path.abspath(arg))
    if not command:
        raise JobDefinitionError(f"empty {kind} command")
    return Step(command=command)


def combine_from_script(path: str) -> Step | None:
    """The `combine` function of a Python script, if it defines one."""
    if not path.endswith(".py") or not os.path.isfile(path):
        return None
    func = getattr(load_script(path), "combine", None) or getattr(load_script(path), "combiner", None)
    return Step(func=func, source=os.path.abspath(path)) if callable(func) else None


def _reference_sum(key, values):  # type: ignore[no-untyped-def]
    return sum(values)


def is_sum(step: Step | None) -> bool:
    """Whether a reduce/combine step is exactly `return sum(values)`.

    Such steps are run as dictionary arithmetic inside the engine, with the same result,
    instead of one Python call per key: that is how word count reaches C speed.
    """
    if step is None or step.func is None:
        return False
    func = step.func
    code = getattr(func, "__code__", None)
    ref = _reference_sum.__code__
    if code is None or getattr(func, "__closure__", None) or getattr(func, "__defaults__", None):
        return False
    globs = getattr(func, "__globals__", {})
    # Identical bytecode with the same names: the reference loads no constants, so
    # constants (a docstring) cannot change what the function does.
    return (
        code.co_code == ref.co_code
        and code.co_names == ref.co_names
        and code.co_argcount == 2
        and globs.get("sum", builtins.sum) is builtins.sum
    )


def command_argv(command: str | Sequence[str]) -> list[str]:
    """The argv that runs a streaming command: argv as is, strings through `sh -c`."""
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    return list(command)
