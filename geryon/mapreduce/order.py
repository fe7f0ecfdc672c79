"""The order of keys: Python's own, extended to a total order over mixed types.

Keys of one type sort as Python sorts them (code points for str, bytes lexicographically,
numbers numerically). When a job mixes key types, keys sort first by kind
(numbers < str < bytes < tuples < None) and then by value, so sorting never fails and every
run of the engine agrees. Pure functions, no I/O.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any

# Lists and tuples are one kind: keys emitted as tuples come back from msgpack as lists.
_RANK = {bool: 0, int: 0, float: 0, str: 1, bytes: 2, tuple: 3, list: 3, type(None): 4}


def total_key(obj: Any) -> tuple:
    """A sort key that orders any mix of carried types."""
    t = type(obj)
    if t is tuple or t is list:
        return (3, tuple(total_key(x) for x in obj))
    if t is type(None):
        return (4, 0)
    return (_RANK.get(t, 5), obj)


def sort_keys(keys: list) -> None:
    """Sort `keys` in place in the engine's key order."""
    try:
        keys.sort()
    except TypeError:
        keys.sort(key=total_key)


def argsort(keys: list) -> list[int]:
    """Indices that put `keys` in the engine's key order; stable for equal keys."""
    try:
        return sorted(range(len(keys)), key=keys.__getitem__)
    except TypeError:
        tk = [total_key(k) for k in keys]
        return sorted(range(len(keys)), key=tk.__getitem__)


def key_kind(keys: Iterable) -> str:
    """Name the kind of a sorted run's keys: one rank, or "mixed".

    Sequence keys (lists, tuples) count as mixed: their elements may differ in type, which
    a natural comparison only discovers, and fails on, half way through a merge.
    """
    types = set(map(type, keys))  # a C loop: this runs over every key of a run
    kinds = {_RANK.get(t, 5) for t in types}
    if not kinds:
        return ""
    if len(kinds) == 1 and 3 not in kinds:
        return str(kinds.pop())
    return "mixed"


def merge(runs: Iterable[Iterable[tuple[Any, Any]]], mixed: bool) -> Iterator[tuple[Any, Any]]:
    """Merge sorted runs of (key, x) pairs, stable across runs (earlier run first).

    `mixed` says whether the runs hold keys of different kinds; it must be known before
    the merge starts, because a merge cannot change its order half way through.
    """
    if mixed:
        return heapq.merge(*runs, key=lambda pair: total_key(pair[0]))
    return heapq.merge(*runs, key=itemgetter(0))


def sorted_values(values: Iterable) -> list:
    """A group's values in the engine's order (mrjob's SORT_VALUES): Python's, else the total order."""
    vals = list(values)
    try:
        vals.sort()
    except TypeError:
        vals.sort(key=total_key)
    return vals
