"""Command blocks: start a shell command or argv in a directory, for streaming jobs.

Inferno passes code around as shell blocks, `{ cmd; cmd }` (sh(1)); Geryon's `rcpu` and
`mapreduce` take such blocks. Here a block's braces are stripped and its body runs
under `/bin/sh -c`; any other string runs under `/bin/sh -c` as it is; a sequence of
strings runs as an argv with no shell. The body is POSIX sh, not Inferno sh.

This module starts processes and stops them; it does not wait for, read from or
write to them: the caller owns the pipes (mrjob's habit: the framework owns handles).
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
from typing import IO, Any, Mapping, Sequence, Union

from shell.errors import BlockNotStarted

log = logging.getLogger(__name__)

SHELL = "/bin/sh"
"""The shell that runs string commands and block bodies."""

DEFAULT_STOP_GRACE = 5.0
"""Seconds `stop` waits after SIGTERM before SIGKILL."""

Redirect = Union[int, IO[Any], None]
"""What subprocess accepts for stdin/stdout/stderr: PIPE, DEVNULL, a file, or None."""


def _outer_block_end(text: str) -> int:
    """Return the index of the `}` closing the `{` at text[0], or -1.

    Quotes ('...', "...") and backslash escapes are skipped, so braces inside them
    do not count.
    """
    depth = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            close = text.find("'", i + 1)
            if close < 0:
                return -1
            i = close + 1
            continue
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            if i >= n:
                return -1
            i += 1
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def is_command_block(text: object) -> bool:
    """Tell whether `text` is one Inferno-style block: `{ ... }` around the whole string.

    `{ a } | { b }` is not one block (its first brace closes before the end).
    """
    if not isinstance(text, str):
        return False
    stripped = text.strip()
    if not stripped.startswith("{"):
        return False
    return _outer_block_end(stripped) == len(stripped) - 1


def block_body(text: str) -> str:
    """Return the inside of a command block, or `text` unchanged if it is not one."""
    if not is_command_block(text):
        return text
    stripped = text.strip()
    return stripped[1:-1].strip()


def command_argv(cmd: str | Sequence[str]) -> list[str]:
    """Return the argv that runs `cmd`: `[SHELL, "-c", body]` for strings, else `cmd`.

    Raises:
        ValueError: if `cmd` is an empty argv.
    """
    if isinstance(cmd, str):
        return [SHELL, "-c", block_body(cmd)]
    argv = [str(a) for a in cmd]
    if not argv:
        raise ValueError("empty command")
    return argv


def start(
    cmd: str | Sequence[str],
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    stdin: Redirect = subprocess.DEVNULL,
    stdout: Redirect = None,
    stderr: Redirect = None,
    *,
    inherit_env: bool = True,
    new_session: bool = True,
) -> subprocess.Popen[bytes]:
    """Start `cmd` in directory `cwd` and return the running process.

    Args:
        cmd: a command block `{ ... }` or shell string (run with `/bin/sh -c`), or an
            argv (run directly).
        cwd: working directory; must exist.
        env: variables added to (or replacing those of) the child's environment.
        stdin: the child's stdin; DEVNULL by default, so a job never reads the
            caller's terminal or socket.
        stdout, stderr: as for `subprocess.Popen` (None: inherit).
        inherit_env: start from this process's environment (else from `env` alone).
        new_session: put the child in its own session and process group, so `stop`
            reaches the shell's children too.

    Raises:
        BlockNotStarted: if `cwd` or the program does not exist or cannot be run.
    """
    argv = command_argv(cmd)
    child_env: dict[str, str] | None = None
    if env is not None or not inherit_env:
        # The environment is read here only to pass it on, not as configuration.
        child_env = dict(os.environ) if inherit_env else {}
        child_env.update(env or {})
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=child_env, stdin=stdin, stdout=stdout, stderr=stderr,
            start_new_session=new_session,
        )
    except OSError as exc:
        what = exc.filename if exc.filename is not None else argv[0]
        raise BlockNotStarted(f"cannot start {argv[0]!r} in {os.fspath(cwd)!r}: {what}: {exc.strerror or exc}") from exc
    log.debug("started pid %d in %s: %r", proc.pid, os.fspath(cwd), argv)
    return proc


def stop(proc: subprocess.Popen[Any], grace: float = DEFAULT_STOP_GRACE) -> int:
    """Terminate `proc` (its whole process group if it leads one) and reap it.

    Sends SIGTERM, waits up to `grace` seconds, then SIGKILL. Returns the exit status
    (negative: killed by that signal). Safe on a process that already exited.
    """
    if proc.poll() is not None:
        return proc.returncode
    _signal(proc, signal.SIGTERM)
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        _signal(proc, signal.SIGKILL)
        return proc.wait()


def _signal(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:
        pass  # exited between poll() and the signal
