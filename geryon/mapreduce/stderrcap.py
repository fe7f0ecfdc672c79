"""The stderr cap of a job's attempt logs: head + note + tail, computed from the bytes.

Each attempt's log holds at most `cap` bytes: past it, the log is rewritten as its head
(the first quarter), a line `[geryon: N bytes of stderr dropped]`, and its tail (up to half
the cap): the start says what the task was doing, the end holds the traceback. Cuts fall
on newlines. `LogState` is what the store knows of one log without reading it back. Pure:
`cut_log` computes the new text; the caller reads and writes the file.

Not here: the files and when a log is cut (`geryon.mapreduce.jobstore`).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class LogState:
    """What the store knows of one stderr log without reading it back."""

    __slots__ = ("size", "head", "marker", "dropped")

    def __init__(self) -> None:
        self.size = 0  # bytes in the file
        self.head = 0  # bytes of the kept head, once the log has been cut
        self.marker = 0  # bytes of the note after the head
        self.dropped = 0


def cut_log(old: bytes, state: LogState, data: bytes, cap: int) -> tuple[bytes, int, int, int]:
    """The log `old` with `data` appended, cut to head + note + tail: the new text, the bytes of
    its head and of its note, and the bytes dropped in all (`state` is not changed)."""
    if state.marker:
        head, rest = old[:state.head], old[state.head + state.marker:] + data
    else:
        whole = old + data
        head = whole[:cap // 4]
        newline = head.rfind(b"\n")
        if newline >= 0:
            head = head[:newline + 1]  # end the head on a whole line
        rest = whole[len(head):]
    tail = rest[-(cap // 2):]
    newline = tail.find(b"\n")
    if 0 <= newline < len(tail) - 1 and len(tail) < len(rest):
        tail = tail[newline + 1:]  # start the tail on a whole line
    dropped = state.dropped + len(rest) - len(tail)
    marker = f"\n[geryon: {dropped} bytes of stderr dropped]\n".encode()
    return head + marker + tail, len(head), len(marker), dropped
