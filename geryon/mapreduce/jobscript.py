"""A job's code: its steps as Python functions or commands, and the scripts they are loaded from.

A Python step is a function: `map(key, value)`, `reduce(key, values)`, `combine(key, values)`,
found by name in a script file (mrjob's `mapper`, `reducer` too), with the script's hooks,
partitioner and `sort_values`. A streaming step is a command (an executable, an argv, or a shell
command block `{ ... }`) that reads records on stdin and writes `key<TAB>value` lines. Scripts
are loaded from files, so that the same job can travel to another machine as files (never
pickled). Not here: what a job is (`geryon.mapreduce.job`), running steps (`maptask`, `reducetask`).
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
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from geryon.errors import JobDefinitionError

log = logging.getLogger(__name__)


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


def identity_map(key: Any, value: Any) -> Iterator[tuple[Any, Any]]:
    """The map of a step that names none (mrjob's reducer-only step): each record as it is."""
    yield key, value


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
