"""Which partition a key belongs to: a hash that is the same in every process and machine.

Never Python's `hash()`: it is salted per process (PYTHONHASHSEED), which would send one
key to different reducers. The default is zlib.crc32 over a canonical encoding of the key;
"geryon" is Inferno Geryon's own hash (`h = 65599*h + c`), for output partitioned exactly
as the original's `intermediate` did.
"""
from __future__ import annotations

import bisect
import json
import zlib
from collections.abc import Callable
from typing import Any

from geryon.errors import GeryonError

PARTITIONERS = ("crc32", "geryon")
"""Names accepted by `partitioner()`."""


def key_bytes(key: Any) -> bytes:
    """Canonical bytes of a key; keys equal under == (1, 1.0, True) give equal bytes."""
    t = type(key)
    if t is str:
        return key.encode("utf-8", "surrogatepass")
    if t is bytes:
        return key
    if t is int or t is bool:
        return b"%d" % key
    if t is float:
        return b"%d" % key if key.is_integer() else repr(key).encode()
    if t is tuple or t is list:
        return json.dumps([_jsonable(k) for k in key], separators=(",", ":")).encode("utf-8", "surrogatepass")
    if key is None:
        return b"null"
    return str(key).encode("utf-8", "surrogatepass")


def _jsonable(key: Any) -> Any:
    if isinstance(key, bytes):
        return key.decode("utf-8", "surrogateescape")
    if isinstance(key, (tuple, list)):
        return [_jsonable(k) for k in key]
    if isinstance(key, float) and key.is_integer():
        return int(key)
    return key


def crc32_partition(key: Any, n: int) -> int:
    """The default partition of `key` among `n`."""
    if type(key) is str:
        return zlib.crc32(key.encode("utf-8", "surrogatepass")) % n
    return zlib.crc32(key_bytes(key)) % n


def geryon_partition(key: Any, n: int) -> int:
    """Inferno Geryon's partition: `(h & 0x7fffffff) % n`, h over the key's characters."""
    from shell.partition import geryon_partition as _gp  # shell is stdlib-only

    text = key if type(key) is str else key_bytes(key).decode("utf-8", "surrogateescape")
    return _gp(text, n)


def partitioner(name: str) -> Callable[[Any, int], int]:
    """The partition function called `name`."""
    if name == "crc32":
        return crc32_partition
    if name == "geryon":
        return geryon_partition
    raise ValueError(f"unknown partitioner {name!r} (choose from {', '.join(PARTITIONERS)})")


def split_by_partition(keys: list, n: int, part: Callable[[Any, int], int]) -> list[list]:
    """Distribute keys into n lists by partition, keeping their relative order.

    Called on every distinct key of a map task: plain str keys take a tight loop.
    """
    if n == 1:
        return [list(keys)]
    if isinstance(part, RangePartition):
        return part.split(keys, n)
    buckets: list[list] = [[] for _ in range(n)]
    appends = [b.append for b in buckets]
    parts_of = getattr(part, "parts_of", None)
    if parts_of is not None:   # a partitioner command: asked once for all the keys
        for k, r in zip(keys, parts_of(keys, n)):
            appends[r](k)
        return buckets
    if part is crc32_partition:
        crc = zlib.crc32
        try:
            for k in keys:
                appends[crc(k.encode()) % n](k)
            return buckets
        except (AttributeError, TypeError, UnicodeEncodeError):
            buckets = [[] for _ in range(n)]  # not all plain str: the general path below
            appends = [b.append for b in buckets]
    elif part is geryon_partition:
        for k, r in zip(keys, _geryon_parts(keys, n)):
            appends[r](k)
        return buckets
    for k in keys:
        appends[part(k, n)](k)
    return buckets


def _geryon_parts(keys: list, n: int) -> list[int]:
    from shell.partition import geryon_partitioner

    fast = geryon_partitioner(n)
    if all(type(k) is str or type(k) is bytes for k in keys):
        return list(map(fast, keys))
    return [geryon_partition(k, n) for k in keys]


class PartitionError(GeryonError):
    """A job's own partition function gave something other than a partition number in range."""


def checked(func: Callable[[Any, int], Any]) -> Callable[[Any, int], int]:
    """A job's `partition(key, n)` wrapped so that each answer is checked: an int in [0, n).

    Raises (from the wrapper):
        PartitionError: naming the key and what came back, or what it raised.
    """
    def part(key: Any, n: int) -> int:
        try:
            r = func(key, n)
        except Exception as exc:
            raise PartitionError(f"partition({key!r}, {n}) raised {type(exc).__name__}: {exc}") from exc
        if type(r) is not int:   # bool is not a partition, nor a float
            raise PartitionError(f"partition({key!r}, {n}) returned {r!r}, not an int in 0..{n - 1}")
        if not 0 <= r < n:
            raise PartitionError(f"partition({key!r}, {n}) returned {r}, outside 0..{n - 1}")
        return r
    return part


_NUMBERS = frozenset({int, float, bool})


class RangePartition:
    """Total-order partitioning (Hadoop's TotalOrderPartitioner): key k goes to the number of
    `bounds` that are <= k in the engine's key order (`geryon.mapreduce.order`), so part r
    holds keys in [bounds[r-1], bounds[r]) and the parts read in order are sorted.

    `bounds` are sorted and distinct; fewer than n - 1 of them leave the last parts empty.
    """

    def __init__(self, bounds: Any) -> None:
        from geryon.mapreduce.order import total_key

        self.bounds = list(bounds)
        self._total = [total_key(b) for b in self.bounds]
        self._key = total_key
        kinds = set(map(type, self.bounds))
        # keys of the bounds' one plain kind compare as they are (the C comparison)
        self._plain = (_NUMBERS if kinds and kinds <= _NUMBERS else
                       frozenset(kinds) if len(kinds) == 1 and kinds <= {str, bytes} else frozenset())

    def __call__(self, key: Any, n: int) -> int:
        if type(key) in self._plain:
            return bisect.bisect_right(self.bounds, key)
        return bisect.bisect_right(self._total, self._key(key))

    def split(self, keys: list, n: int) -> list[list]:
        """`split_by_partition` for this partitioner: keys into n lists, order kept."""
        buckets: list[list] = [[] for _ in range(n)]
        appends = [b.append for b in buckets]
        bounds, plain, right = self.bounds, self._plain, bisect.bisect_right
        if plain and all(type(k) in plain for k in keys):   # one C pass per key
            for k in keys:
                appends[right(bounds, k)](k)
            return buckets
        for k in keys:
            appends[self(k, n)](k)
        return buckets


def key_prefix(key: str, fields: int) -> str:
    """The first `fields` tab-separated fields of a streaming key (all of it when it has fewer)."""
    i = -1
    for _ in range(fields):
        i = key.find("\t", i + 1)
        if i < 0:
            return key
    return key[:i]


def fields_partitioner(part: Callable[[Any, int], int], fields: int) -> Callable[[Any, int], int]:
    """`part` over the first `fields` fields of each key (Hadoop's KeyFieldBasedPartitioner), so keys
    that agree on those fields meet in one partition whatever their other fields."""
    def by_fields(key: Any, n: int) -> int:
        return part(key_prefix(key, fields) if type(key) is str else key, n)
    return by_fields
