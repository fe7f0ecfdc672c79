"""Run a streaming step: a command fed on stdin, read line by line on stdout.

Hadoop Streaming's rules: records in on stdin, `key<TAB>value` lines out on stdout, and on
stderr `reporter:counter:G,N,n` / `reporter:status:msg` lines (applied to the task's
counters) mixed with free text (kept: its tail goes into failure messages). A feeder
thread writes stdin while the caller reads stdout, so neither side can block the other;
with `drain`, it reads its input to the end even after the command stopped reading, so
that input errors (a checksum mismatch) are still found: a command that reads its files
from the task's view instead of stdin must not read damaged bytes unnoticed.
"""
from __future__ import annotations

import collections
import logging
import os
import re
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from typing import Any

from geryon.mapreduce import counters
from geryon.errors import GeryonError
from geryon.mapreduce.job import Step, command_argv
from geryon.mapreduce.partition import PartitionError

log = logging.getLogger(__name__)

READ_BLOCK = 1 << 20
"""Bytes read from a command's stdout at a time by `StreamingProcess.blocks`."""

STDERR_TAIL = 20
"""Lines of a command's stderr kept for failure messages."""


class CommandFailed(GeryonError):
    """A streaming command exited with a non-zero status.

    `step` names the command when it is not the task's own map or reduce (a combiner, a
    partitioner): failure messages name it instead."""

    def __init__(self, message: str, status: int, stderr_tail: list[str], step: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.stderr_tail = stderr_tail
        self.step = step


class StreamingProcess:
    """One run of a streaming command: feed `chunks`, iterate output lines."""

    def __init__(self, command: str | tuple[str, ...], chunks: Iterable[bytes], cwd: str | None = None,
                 env: Mapping[str, str] | None = None, drain: bool = False) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.setdefault("LC_ALL", "C.UTF-8")
        try:
            self._proc = subprocess.Popen(
                command_argv(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, cwd=cwd, env=full_env, bufsize=1 << 16,
            )
        except OSError as exc:
            raise GeryonError(f"cannot start {command!r}: {exc.strerror}") from exc
        self._chunks = chunks
        self._drain = drain
        self._stopped = False
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        self._feed_error: BaseException | None = None
        self._feeder = threading.Thread(target=self._feed, name="geryon-feed", daemon=True)
        self._reader = threading.Thread(target=self._read_stderr, name="geryon-stderr", daemon=True)
        self._feeder.start()
        self._reader.start()

    def _feed(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        chunks = iter(self._chunks)
        try:
            try:
                for chunk in chunks:
                    stdin.write(chunk)
            except BrokenPipeError:
                # The command stopped reading: its exit status tells the story; the rest
                # of the input is still read when asked, for its errors alone.
                for _ in chunks if self._drain else ():
                    if self._stopped:
                        break
        except BaseException as exc:  # an input error: reported by wait()
            self._feed_error = exc
        finally:
            try:
                stdin.close()
            except BrokenPipeError:
                pass

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not counters.parse_reporter_line(line):
                self.stderr_tail.append(line)
                log.info("stderr: %s", line)

    def blocks(self) -> Iterator[bytes]:
        """The command's stdout in blocks of whole lines, each ending in a newline (one is added
        to an unterminated last line): what `lines` yields, without a Python step per line."""
        out = self._proc.stdout
        assert out is not None
        rest = bytearray()
        while True:
            data = out.read1(READ_BLOCK)
            if not data:
                break
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest += data      # a line longer than a block: read on
                continue
            if rest:
                rest += data[:cut]
                yield bytes(rest)
                rest = bytearray(data[cut:])
            else:
                yield data if cut == len(data) else data[:cut]
                rest += data[cut:]
        if rest:
            yield bytes(rest) + b"\n"

    def lines(self) -> Iterator[bytes]:
        """The command's stdout, line by line (bytes, newline removed)."""
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            yield raw[:-1] if raw.endswith(b"\n") else raw

    def wait(self, step: str = "") -> None:
        """Wait for the command; raise CommandFailed on a non-zero exit (naming `step`, when given), or
        the input error."""
        status = self._proc.wait()
        self._feeder.join()
        self._reader.join()
        if self._feed_error is not None:
            raise self._feed_error
        if status != 0:
            what = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
            raise CommandFailed(f"{step}: command {what}" if step else f"command {what}", status,
                                list(self.stderr_tail), step)

    def kill(self) -> None:
        self._stopped = True
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for f in (self._proc.stdout, self._proc.stderr):
            if f is not None:
                f.close()

    def __enter__(self) -> "StreamingProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()
        self._feeder.join(timeout=5)
        self._reader.join(timeout=5)


def split_block(block: bytes) -> list[tuple[str, str]]:
    """`split_line` of every line of a block of whole lines (`StreamingProcess.blocks`)."""
    lines = block.decode("utf-8", "surrogateescape").split("\n")
    lines.pop()   # after the last newline
    return [(k, v) for k, _, v in map(str.partition, lines, repeat("\t"))]


def split_line(raw: bytes) -> tuple[str, str]:
    """A streaming output line as (key, value): split at the first tab (Hadoop's rule)."""
    line = raw.decode("utf-8", "surrogateescape")
    key, _, value = line.partition("\t")
    return key, value


def split_fields(raw: bytes, fields: int) -> tuple[str, str]:
    """A streaming output line as (key, value), the key its first `fields` tab-separated fields
    (Hadoop's stream.num.map.output.key.fields): a line with fewer tabs is all key, its value empty."""
    line = raw.decode("utf-8", "surrogateescape")
    i = -1
    for _ in range(fields):
        i = line.find("\t", i + 1)
        if i < 0:
            return line, ""
    return line[:i], line[i + 1:]


_NUMBER = re.compile(rb"-?[0-9]+")

FEED_LINES = 8192
"""Lines written to a combiner or partitioner command at a time."""


def _encoded(lines: Iterable[str]) -> Iterator[bytes]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= FEED_LINES:
            yield "".join(batch).encode("utf-8", "surrogateescape")
            batch = []
    if batch:
        yield "".join(batch).encode("utf-8", "surrogateescape")


class StreamingCombiner:
    """Hadoop Streaming's `-combiner CMD` over a map task's buffer, each time it is written (a spill,
    the end): one run of the command reads the buffer's `key<TAB>value` lines, sorted by key within
    each partition, and prints such lines, which replace them. It may run any number of times
    (none, when the buffer is merged from spills), so a job's output must not depend on it."""

    def __init__(self, step: Step, key_fields: int, cwd: str | None, env: Mapping[str, str],
                 budget: int | None = None) -> None:
        assert step.command is not None
        self._step, self._fields, self._cwd, self._env = step, key_fields, cwd, dict(env)
        self._budget = budget   # bytes of output held at most: the task's sort budget

    def __call__(self, store: dict, buckets: Sequence[Sequence[str]]) -> dict:
        """The buffer `store` (key -> values; keys in `buckets`, sorted) after the command."""
        what = f"combiner {self._step.describe()}"
        lines = (f"{k}\t{v}\n" for keys in buckets for k in keys for v in store[k])
        out: dict = {}
        n = 0
        fields = self._fields
        with StreamingProcess(self._step.command, _encoded(lines), cwd=self._cwd, env=self._env) as proc:  # type: ignore[arg-type]
            held, budget = 0, self._budget
            for raw in proc.lines():
                held += len(raw) + 1
                if budget is not None and held > budget:   # `yes` would fill the memory: stop it
                    raise GeryonError(f"{what} printed more than --sort-budget {_size(budget)} for one buffer "
                                      f"of {sum(map(len, store.values()))} lines: a combiner's output must fit "
                                      f"where its input did")
                k, v = split_fields(raw, fields)
                g = out.get(k)
                if g is None:
                    out[k] = [v]
                else:
                    g.append(v)
                n += 1
            proc.wait(what)
        counters.increment_counter("geryon", "combine_input_records", sum(map(len, store.values())))
        counters.increment_counter("geryon", "combine_output_records", n)
        return out


class CommandPartitioner:
    """A partitioner command (madoop's convention): run with R as its first argument (and in
    $GERYON_PARTITIONS), it reads keys, one per line, and prints each key's partition number, one
    per line, in order. Asked once per buffer written (`parts_of`), never once per key; every
    answer is checked."""

    def __init__(self, step: Step, cwd: str | None, env: Mapping[str, str]) -> None:
        assert step.command is not None
        self._step, self._cwd, self._env = step, cwd, dict(env)

    def __call__(self, key: str, n: int) -> int:
        return self.parts_of([key], n)[0]

    def parts_of(self, keys: Sequence[str], n: int) -> list[int]:
        """The partition of each of `keys` among `n`, as the command answers.

        Raises:
            CommandFailed: the command failed (naming it).
            PartitionError: an answer is not a number in 0..n-1, or there are fewer or more
                answers than keys (naming the command and the key).
        """
        cmd = self._step.command
        argv = (*command_argv(cmd), "geryon-partitioner", str(n)) if isinstance(cmd, str) else (*cmd, str(n))  # type: ignore[misc]
        what = f"partitioner {self._step.describe()}"
        answers: list[bytes] = []
        env = {**self._env, "GERYON_PARTITIONS": str(n)}
        with StreamingProcess(argv, _encoded(f"{k}\n" for k in keys), cwd=self._cwd, env=env) as proc:
            for raw in proc.lines():
                if len(answers) == len(keys):   # one line too many (`yes 0` would never end): stop it
                    raise PartitionError(f"{what} answered more than {_lines(len(keys))} for {_keys(len(keys))}")
                answers.append(raw)
            proc.wait(what)
        if len(answers) < len(keys):
            raise PartitionError(f"{what} answered {_lines(len(answers))} for {_keys(len(keys))}: "
                                 f"none for key {keys[len(answers)]!r}")
        parts = []
        for key, raw in zip(keys, answers):
            text = raw.strip()
            if _NUMBER.fullmatch(text) is None:
                shown = raw.decode("utf-8", "replace")
                raise PartitionError(f"{what} answered {shown!r} for key {key!r}, not a partition number 0..{n - 1}")
            r = int(text)
            if not 0 <= r < n:
                raise PartitionError(f"{what} answered {r} for key {key!r}, outside 0..{n - 1}")
            parts.append(r)
        return parts


def _lines(n: int) -> str:
    return f"{n} line" if n == 1 else f"{n} lines"


def _keys(n: int) -> str:
    return "1 key" if n == 1 else f"{n} keys"


def _size(n: int) -> str:
    from geryon.disks.chunk import describe_size

    return describe_size(n)
