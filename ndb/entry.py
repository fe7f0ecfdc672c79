"""Entries of an ndb(6) database: values grouped by the source line they came from.

Pure values only: no parsing (parse.py), no printing (format.py), no files (database.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tuple:
    """One `attr=val` pair; a bare `attr` or `attr=` has the empty value."""

    attr: str
    val: str = ""

    def __post_init__(self) -> None:
        # ndb(6) has no way to write an empty name or a newline, so such a pair could
        # never be printed and read back.
        if not isinstance(self.attr, str) or not isinstance(self.val, str):
            raise TypeError(f"ndb tuple attr and val must be str, not {self.attr!r}={self.val!r}")
        if not self.attr:
            raise ValueError("ndb tuple with an empty attribute name")
        if "\n" in self.attr or "\n" in self.val:
            raise ValueError(f"ndb tuple {self.attr!r}={self.val!r} contains a newline")


@dataclass(frozen=True)
class Entry:
    """One database entry: its pairs, grouped by source line.

    `lines` keeps the grouping because ndb(6) pairs on one line "bind tighter" (see
    `query`). `file` and `line` say where the entry started; they do not take part in
    equality, so two entries with the same pairs are equal wherever they were read.
    """

    lines: tuple[tuple[Tuple, ...], ...]
    file: str = field(default="<string>", compare=False)
    line: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        # Accept lists for convenience; store tuples so the value stays hashable.
        object.__setattr__(self, "lines", tuple(tuple(l) for l in self.lines))

    @property
    def tuples(self) -> tuple[Tuple, ...]:
        """All pairs of the entry, in file order."""
        return tuple(t for l in self.lines for t in l)

    def get(self, attr: str) -> str | None:
        """The first value of `attr`, or None when the entry has no such attribute."""
        for t in self.tuples:
            if t.attr == attr:
                return t.val
        return None

    def getall(self, attr: str) -> list[str]:
        """Every value of `attr`, in file order."""
        return [t.val for t in self.tuples if t.attr == attr]

    def has(self, attr: str) -> bool:
        """Whether any line of the entry holds `attr`."""
        return any(t.attr == attr for t in self.tuples)

    def haspair(self, attr: str, value: str) -> bool:
        """Whether any line holds exactly `attr=value` ('' matches an empty value)."""
        return any(t.attr == attr and t.val == value for t in self.tuples)

    def query(self, attr: str, value: str, rattr: str) -> list[str]:
        """The values of `rattr`, nearest to `attr=value` first.

        ndb(6): the values of `rattr` on lines that also hold `attr=value` come first,
        then those on the entry's other lines, each group in file order
        (attrdb(2) `Dbentry.findbyattr`). Like Inferno, the entry need not hold the pair.
        """
        near: list[str] = []
        far: list[str] = []
        for l in self.lines:
            values = [t.val for t in l if t.attr == rattr]
            matched = any(t.attr == attr and t.val == value for t in l)
            (near if matched else far).extend(values)
        return near + far
