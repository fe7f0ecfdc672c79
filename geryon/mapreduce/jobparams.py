"""Job parameters and task environments: `-D name=value` and `--cmdenv NAME=VALUE`, in every task.

A job's parameters reach each of its tasks, local or on any node, as one JSON object in the
task's environment (`GERYON_PARAMS`); a job reads them with `geryon.param("name")` or the
`geryon.params` mapping (also callable: `geryon.params()` is a dict; read when used, so a module-level `from geryon import params`
works). Streaming tasks also see each parameter as an environment variable, Hadoop
Streaming's way (`-D mapreduce.x=1` is `$mapreduce_x`), unless `--cmdenv` sets that name.
`--cmdenv` pairs are the environment of every task, Python and streaming. Not here: parsing
the command line (`geryon.cli.mapreduce`), shipping jobs (`geryon.mapreduce.jobpack`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

ENV_PARAMS = "GERYON_PARAMS"
"""The environment variable holding a task's job parameters (a JSON object of str to str)."""

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


def _current() -> dict[str, str]:
    text = os.environ.get(ENV_PARAMS, "")
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        log.warning("%s is not JSON; no job parameters", ENV_PARAMS)
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


class Params(Mapping[str, str]):
    """The running task's job parameters (read from its environment each time)."""

    def __getitem__(self, name: str) -> str:
        return _current()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_current())

    def __len__(self) -> int:
        return len(_current())

    def __call__(self) -> dict[str, str]:
        """`geryon.params()`: the parameters as a plain dict (a copy), the issue's spelling."""
        return _current()

    def __repr__(self) -> str:
        return f"geryon.params({_current()!r})"


params = Params()
"""The job's parameters in a task (`-D name=value`, `Job(params=...)`), as a read-only mapping."""


def param(name: str, default: Any = None) -> Any:
    """A job parameter's value (a str), or `default` when the job was not given it."""
    return _current().get(name, default)


def task_env(job: Any, streaming: bool = False) -> dict[str, str]:
    """The environment variables a task of `job` gets on top of its node's own.

    Args:
        job: a `geryon.mapreduce.job.Job` (its `env`, `cmdenv` and `params`).
        streaming: also each parameter under its Hadoop Streaming name.
    """
    env: dict[str, str] = {}
    pairs = tuple(getattr(job, "params", ()))
    if streaming:
        for name, value in pairs:
            env[_NOT_NAME.sub("_", name)] = value
    env.update(dict(getattr(job, "env", ())))
    env.update(dict(getattr(job, "cmdenv", ())))
    env[ENV_PARAMS] = json.dumps(dict(pairs), sort_keys=True)
    return env


@contextlib.contextmanager
def task_environment(job: Any) -> Iterator[None]:
    """Run a Python task of `job` with its environment set (restored afterwards)."""
    env = task_env(job)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
