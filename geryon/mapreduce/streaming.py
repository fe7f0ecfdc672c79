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
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from geryon.mapreduce import counters
from geryon.errors import GeryonError
from geryon.mapreduce.job import command_argv

log = logging.getLogger(__name__)

STDERR_TAIL = 20
"""Lines of a command's stderr kept for failure messages."""


class CommandFailed(GeryonError):
    """A streaming command exited with a non-zero status."""

    def __init__(self, message: str, status: int, stderr_tail: list[str]) -> None:
        super().__init__(message)
        self.status = status
        self.stderr_tail = stderr_tail


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

    def lines(self) -> Iterator[bytes]:
        """The command's stdout, line by line (bytes, newline removed)."""
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            yield raw[:-1] if raw.endswith(b"\n") else raw

    def wait(self) -> None:
        """Wait for the command; raise CommandFailed on a non-zero exit, or the input error."""
        status = self._proc.wait()
        self._feeder.join()
        self._reader.join()
        if self._feed_error is not None:
            raise self._feed_error
        if status != 0:
            what = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
            raise CommandFailed(f"command {what}", status, list(self.stderr_tail))

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


def split_line(raw: bytes) -> tuple[str, str]:
    """A streaming output line as (key, value): split at the first tab (Hadoop's rule)."""
    line = raw.decode("utf-8", "surrogateescape")
    key, _, value = line.partition("\t")
    return key, value
