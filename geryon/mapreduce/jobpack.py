"""Job packs: a job's code and settings as one content-addressed archive, never pickled.

A pack is a deterministic tar (sorted members, fixed times and owners) of the job's files
(its scripts, the modules they import from their own directory, the files it names: see
`geryon.mapreduce.jobfiles`; never the rest of the directory), plus `geryon-job.json` naming each step
as a script path inside the pack and a function name (or a command) and the job's settings,
parameters and task environment. Its name is the
SHA-256 of its bytes, so a node caches a pack once and can check what it was sent.
Unpacking (`unpack`) goes through `geryon.records.untar`, which bounds the unpacked size and
refuses unsafe members. Not here: sending
packs to nodes (the cluster driver), running tasks (maptask, reducetask).
"""
from __future__ import annotations

import hashlib
import inspect
import io
import json
import logging
import os
import secrets
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from geryon.mapreduce.attempt import FailureKind
from geryon.errors import GeryonError
from geryon.mapreduce.job import HOOKS, Job, Step, add_import_path, identity_map, load_script
from geryon.mapreduce.jobfiles import DEFAULT_MAX_FOUND, JobFilesError, gather
from geryon.records.untar import UnpackLimits, UnpackRefused, extract, remove_tree

log = logging.getLogger(__name__)

MANIFEST = "geryon-job.json"
"""The pack member describing the job."""

MAX_PACK = 256 << 20
"""The largest pack accepted (bytes): a job's code, not a data set."""

STAGING_MARK = ".tmp-"
"""Infix of a pack being unpacked in a node's cache (`<digest>.tmp-<random>`)."""

STEP_KINDS = ("map", "reduce", "combine", "partition", "partition_cmd", *HOOKS)
"""The steps a manifest names (None, a command, or a script and function)."""

_SETTINGS = ("partitions", "name", "reader", "partitioner", "format", "sort_budget", "split_size", "skip_bad", "sort_values",
             "total_order", "key_fields", "partition_fields")


class JobPackError(GeryonError):
    """A job cannot be packed, or a pack is damaged or unsafe."""

    failure_kind = FailureKind.USER   # a pack that does not load fails the job, on every node alike


@dataclass(frozen=True)
class JobPack:
    """A packed job: its bytes and their SHA-256 (the pack's name)."""

    data: bytes
    digest: str

    @classmethod
    def of(cls, data: bytes) -> "JobPack":
        return cls(data, hashlib.sha256(data).hexdigest())


def _script_of(step: Step) -> tuple[str, str | None]:
    """The file a Python step lives in, and its function's name."""
    if step.source:
        return step.source, getattr(step.func, "__name__", None)
    func = step.func
    path = inspect.getsourcefile(func) if func is not None else None  # type: ignore[arg-type]
    qualname = getattr(func, "__qualname__", "")
    if not path or "<" in qualname:
        raise JobPackError(
            f"{qualname or func!r} cannot travel to another machine: define it at the top level "
            "of a script file (functions are sent as files, never pickled)"
        )
    return os.path.abspath(path), getattr(func, "__name__", None)


def build(job: Job | Sequence[Job], base: str | None = None, max_found: int = DEFAULT_MAX_FOUND) -> JobPack:
    """Pack `job`: its scripts, the modules they import from their directory, its named files
    (`job.py_files`, `job.files`) and its settings, with `base` (default: the first script's
    directory) as the pack's top.

    Given the steps of a multi-step job (a list of Jobs, `steps.step_jobs`), one pack carries them
    all: its manifest lists each step's (`multi`), and a task names the step it runs (`load`).

    Raises:
        JobPackError: a step is a function with no file (a lambda, a closure), a script
            lies outside the packed directory, or the job's files cannot be gathered.
    """
    jobs = [job] if isinstance(job, Job) else list(job)
    if not jobs:
        raise JobPackError("nothing to pack: no steps")
    specs = [_step_specs(j) for j in jobs]
    scripts = [path for _, paths in specs for path in paths]
    root = os.path.abspath(base) if base else (os.path.dirname(scripts[0]) if scripts else os.getcwd())
    manifests = []
    for j, (steps, _) in zip(jobs, specs):
        _relative(steps, root)
        manifests.append({"steps": steps, "settings": {k: getattr(j, k) for k in _SETTINGS},
                          "env": [list(p) for p in j.env], "params": [list(p) for p in j.params],
                          "cmdenv": [list(p) for p in j.cmdenv]})
    manifest = manifests[0] if len(jobs) == 1 else {**manifests[0], "multi": manifests}
    first = jobs[0]
    try:
        members = gather(sorted(set(scripts)), root, py_files=first.py_files, files=first.files, max_found=max_found)
    except JobFilesError as exc:
        raise JobPackError(str(exc)) from exc
    return JobPack.of(_tar(members, json.dumps(manifest, sort_keys=True).encode()))


def _step_specs(job: Job) -> tuple[dict[str, Any], list[str]]:
    """What a manifest says of each of a job's steps (absolute script paths), and the scripts."""
    steps: dict[str, Any] = {}
    scripts: list[str] = []
    for kind in STEP_KINDS:
        step = getattr(job, kind)
        if step is None:
            steps[kind] = None
        elif step.func is identity_map:   # a step that names no map: nothing of ours to ship
            steps[kind] = {"builtin": "identity"}
        elif step.streaming:
            cmd = step.command
            steps[kind] = {"command": cmd if isinstance(cmd, str) else list(cmd)}
            if step.source:
                scripts.append(step.source)
        else:
            path, func = _script_of(step)
            scripts.append(path)
            steps[kind] = {"script": path, "function": func}
    return steps, scripts


def _relative(steps: dict[str, Any], root: str) -> None:
    """Make a manifest's script paths (and an executable's) relative to the pack's top."""
    for kind, spec in steps.items():
        if spec and "script" in spec:
            rel = os.path.relpath(spec["script"], root)
            if rel.startswith(".."):
                raise JobPackError(f"{spec['script']} is outside the job directory {root}")
            spec["script"] = rel
        elif spec and isinstance(spec.get("command"), list) and spec["command"]:
            first = spec["command"][0]
            if os.path.isabs(first) and not os.path.relpath(first, root).startswith(".."):
                spec["command"][0] = os.path.relpath(first, root)
                spec["relative"] = True


def _tar(members: dict[str, str], manifest: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, MANIFEST, manifest, 0o644)
        for name in sorted(members):
            full = members[name]
            with open(full, "rb") as f:
                _add_bytes(tar, name, f.read(), 0o755 if os.access(full, os.X_OK) else 0o644)
            if buf.tell() > MAX_PACK:
                raise JobPackError(f"the job's files are larger than {MAX_PACK >> 20} MiB")
    return buf.getvalue()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def unpack(data: bytes, cache: str, digest: str | None = None, limits: UnpackLimits | None = None) -> str:
    """Unpack a pack into `cache/<digest>` (once) and return that directory.

    The pack is unpacked by `geryon.records.untar.extract` under `limits` (sizes, member count,
    no sparse files, links, devices or names leaving the pack) into a staging directory
    `<digest>.tmp-*` of `cache`, renamed into place when whole; refused, it leaves nothing.

    Raises:
        JobPackError: the bytes do not match `digest`, or the pack is refused.
    """
    actual = hashlib.sha256(data).hexdigest()
    if digest is not None and actual != digest:
        raise JobPackError(f"job pack damaged: sha256 {actual[:12]}, expected {digest[:12]}")
    target = os.path.join(cache, actual)
    if os.path.isfile(os.path.join(target, MANIFEST)):
        return target
    os.makedirs(cache, exist_ok=True)
    staging = os.path.join(cache, f"{actual}{STAGING_MARK}{secrets.token_hex(4)}")
    try:
        extract(io.BytesIO(data), staging, limits)
    except UnpackRefused as exc:
        raise JobPackError(f"job pack refused: {exc}") from exc
    try:
        if not os.path.isfile(os.path.join(staging, MANIFEST)):
            raise JobPackError("job pack refused: it has no manifest")
        try:
            os.rename(staging, target)
        except OSError:  # another task unpacked it first
            remove_tree(staging)
    except BaseException:
        remove_tree(staging)
        raise
    return target


def load(directory: str, step: int = 0) -> Job:
    """The Job described by an unpacked pack, its scripts loaded from `directory`: for a pack of a
    multi-step job, its step `step` (from 0).

    Raises:
        JobPackError: the manifest is unreadable, a function is missing, or there is no such step.
    """
    try:
        manifest = _manifest(directory, step)
        add_import_path(directory)   # modules shipped at the pack's top (--py-files) import as here
        steps: dict[str, Step | None] = {}
        for kind, spec in manifest["steps"].items():
            if spec is None:
                steps[kind] = None
            elif spec.get("builtin") == "identity":
                steps[kind] = Step(func=identity_map)
            elif "command" in spec:
                cmd = spec["command"]
                if isinstance(cmd, list):
                    if spec.get("relative"):
                        cmd = [os.path.join(directory, cmd[0]), *cmd[1:]]
                    steps[kind] = Step(command=tuple(cmd))
                else:
                    steps[kind] = Step(command=cmd)
            else:
                path = os.path.join(directory, spec["script"])
                func = getattr(load_script(path), spec["function"], None)
                if not callable(func):
                    raise JobPackError(f"{spec['script']} defines no function {spec['function']}")
                steps[kind] = Step(func=func, source=path)
        settings = dict(manifest["settings"])
        env = tuple(tuple(p) for p in manifest.get("env", ()))
        return Job(map=steps["map"], reduce=steps.get("reduce"), combine=steps.get("combine"),
                   partition=steps.get("partition"), partition_cmd=steps.get("partition_cmd"),
                   **{h: steps.get(h) for h in HOOKS},
                   env=env, params=tuple(tuple(p) for p in manifest.get("params", ())),
                   cmdenv=tuple(tuple(p) for p in manifest.get("cmdenv", ())),
                   **settings)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as exc:
        raise JobPackError(f"job pack manifest unreadable: {exc}") from exc


def _manifest(directory: str, step: int = 0) -> dict[str, Any]:
    """The manifest of the pack in `directory`, or of its step `step` (a multi-step job's pack).

    Raises:
        JobPackError: the pack has no such step (a task naming a step it does not carry).
        ValueError: the manifest is not an object.
    """
    with open(os.path.join(directory, MANIFEST)) as f:
        manifest = json.load(f)
    if not isinstance(manifest, dict):
        raise ValueError("not an object")
    multi = manifest.get("multi")
    count = len(multi) if isinstance(multi, list) else 1
    if type(step) is not int or not 0 <= step < count:
        raise JobPackError(f"job pack refused: the task names step {step!r}, the pack has "
                           f"{count} step{'s' if count != 1 else ''}")
    if isinstance(multi, list):
        manifest = multi[step]
        if not isinstance(manifest, dict):
            raise ValueError(f"step {step} is not an object")
    return manifest


def environment(directory: str, step: int = 0) -> dict[str, str]:
    """The environment a task of the unpacked job (its step `step`) gets (set before its scripts load)."""
    from types import SimpleNamespace

    from geryon.mapreduce.jobparams import task_env

    try:
        manifest = _manifest(directory, step)
        pairs = {k: tuple(tuple(p) for p in manifest.get(k, ())) for k in ("env", "params", "cmdenv")}
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise JobPackError(f"job pack manifest unreadable: {exc}") from exc
    return task_env(SimpleNamespace(**pairs))
