"""Bad input records: the errors that name them, and the budget `--skip-bad N` grants.

A reader that meets a malformed record (undecodable text, a corrupt compressed stream, a
truncated tar, a bad WARC header) reports it as a `BadRecord` naming the file and the
position (byte offset or record number). A map task either fails on it, or, given a
`SkipBudget`, skips and counts up to N of them (Hadoop's skip mode). Damaged chunk data
(`checksum.ChecksumMismatch`) is never skipped. Not here: finding bad records (the readers).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from geryon.errors import FailureKind, GeryonError

log = logging.getLogger(__name__)

SKIPPED_GROUP = "geryon"
"""Counter group of the skipped-records counter."""

SKIPPED_NAME = "skipped_records"
"""Counter name of the skipped-records counter (`geryon/skipped_records`)."""


class InputError(GeryonError):
    """An input file could not be read or decoded."""

    failure_kind = FailureKind.INPUT   # a damaged copy: a replica may read


class BadRecord(InputError):
    """A malformed input record; the message names the file and the position.

    `recoverable` says whether the reader can go on with the next record of the same file
    (False: the rest of the file is lost, as after a truncated archive).
    """

    failure_kind = FailureKind.USER    # in every copy alike

    def __init__(self, message: str, recoverable: bool = True) -> None:
        super().__init__(message)
        self.recoverable = recoverable


class TooManyBadRecords(InputError):
    """More bad records than `--skip-bad` allows."""


class SkipBudget:
    """Skips up to `limit` bad records, counting each; past the limit, fails the task.

    Call it with each BadRecord met; it returns to skip the record, or raises. `on_skip` is
    called once per skipped record (a map task adds to the `geryon/skipped_records` counter).
    """

    def __init__(self, limit: int, on_skip: Callable[[], None] | None = None) -> None:
        if limit < 0:
            raise ValueError("the skip limit must not be negative")
        self.limit = limit
        self.skipped = 0
        self.on_skip = on_skip

    def __call__(self, bad: BadRecord) -> None:
        if self.skipped >= self.limit:
            if self.limit == 0:
                raise bad
            raise TooManyBadRecords(
                f"more than {self.limit} bad records (--skip-bad {self.limit}); the last: {bad}") from bad
        self.skipped += 1
        if self.on_skip is not None:
            self.on_skip()
        log.warning("skipping bad record %d of %d allowed: %s", self.skipped, self.limit, bad)
