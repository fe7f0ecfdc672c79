"""Geryon's partition hash: the exact function of inferno-lab 37's `intermediate.b`.

    h = 0; for each character c: h = 65599*h + c   (32-bit wrap-around)
    partition = (h & 0x7fffffff) % n

The hash (Aho, Hopcroft and Ullman's; also known as sdbm's multiplier) runs over
*characters*, i.e. Unicode code points, because Limbo strings are sequences of code
points; a key that is pure ASCII therefore hashes the same whether taken as `str` or as
its UTF-8 bytes. Limbo's `int` is 32-bit two's complement, so masking with 0xFFFFFFFF and
then with 0x7fffffff gives exactly the seed's non-negative value.

This module does not decide where partitions are written and does not know about
files; it is pure arithmetic. Built-in `hash()` is never used: it is salted per process.

Speed: the loops below let the accumulator grow unmasked for short keys (a couple of
machine words of bigint arithmetic is cheaper than a mask per character) and use a
sum of products with precomputed powers for long keys. `geryon_partitioner` adds a
bounded per-partitioner cache, which pays off on the skewed keys of word counts.
"""
from __future__ import annotations

import logging
from operator import mul
from typing import Callable, Union

log = logging.getLogger(__name__)

MULTIPLIER = 65599
"""The seed's multiplier (`fun1` in inferno-lab 37's intermediate.b)."""

MASK32 = 0xFFFFFFFF
"""Limbo `int` arithmetic wraps at 32 bits."""

DEFAULT_CACHE_SIZE = 1 << 16
"""Keys remembered by a `geryon_partitioner` before its cache is cleared."""

_SHORT = 24
"""Keys up to this many characters hash with one mask at the end (h stays < 2**420)."""

_POWERS_LEN = 256
# _POWERS[j] = 65599**j mod 2**32. sum(c_i * 65599**(m-1-i)) over a reversed key needs
# no slicing: map() stops at the shorter iterable. Products stay below 2**53, so
# sum() keeps to its C-long fast path for 256 terms.
_POWERS = [pow(MULTIPLIER, j, 1 << 32) for j in range(_POWERS_LEN)]
_POWER_CHUNK = _POWERS[_POWERS_LEN - 1] * MULTIPLIER & MASK32  # 65599**256 mod 2**32

Key = Union[str, bytes]


def _hash_codes_long(codes: bytes | list[int]) -> int:
    """The hash of a long sequence of code points, 256 at a time."""
    h = 0
    for start in range(0, len(codes), _POWERS_LEN):
        chunk = codes[start:start + _POWERS_LEN]
        part = sum(map(mul, reversed(chunk), _POWERS))
        scale = _POWER_CHUNK if len(chunk) == _POWERS_LEN else _POWERS[len(chunk)]
        h = (h * scale + part) & MASK32
    return h


def geryon_hash(key: str) -> int:
    """Return Geryon's 32-bit hash of `key`, over its Unicode code points.

    Equal to: h = 0; for c in key: h = (65599*h + ord(c)) & 0xFFFFFFFF.
    """
    if len(key) <= _SHORT:
        h = 0
        if key.isascii():
            for c in key.encode("ascii"):
                h = 65599 * h + c
        else:
            for c in map(ord, key):
                h = 65599 * h + c
        return h & MASK32
    if key.isascii():
        return _hash_codes_long(key.encode("ascii"))
    return _hash_codes_long([ord(c) for c in key])


def geryon_hash_bytes(key: bytes) -> int:
    """Return Geryon's hash of UTF-8 bytes `key`, taken as the characters they encode.

    ASCII keys are hashed as they are (their bytes are their code points). Invalid
    UTF-8 decodes with `surrogateescape` (byte 0xNN -> U+DCNN), so distinct byte keys
    stay distinct; Inferno would have read such bytes as U+FFFD instead.
    """
    if len(key) <= _SHORT and key.isascii():
        h = 0
        for c in key:
            h = 65599 * h + c
        return h & MASK32
    if key.isascii():
        return _hash_codes_long(key)
    return geryon_hash(key.decode("utf-8", "surrogateescape"))


def geryon_partition(key: str, n: int) -> int:
    """Return the partition in [0, n) that Geryon's `intermediate n` gives `key`.

    Raises:
        ZeroDivisionError: if n is 0 (callers validate n once, not per key).
    """
    return (geryon_hash(key) & 0x7FFFFFFF) % n


def geryon_partition_bytes(key: bytes, n: int) -> int:
    """`geryon_partition` for a UTF-8 encoded key (see `geryon_hash_bytes`)."""
    return (geryon_hash_bytes(key) & 0x7FFFFFFF) % n


def geryon_partitioner(n: int, cache_size: int = DEFAULT_CACHE_SIZE) -> Callable[[Key], int]:
    """Return a function mapping a `str` or UTF-8 `bytes` key to its partition in [0, n).

    The function remembers up to `cache_size` keys (then forgets them all and starts
    again), so memory stays bounded while repeated keys cost one dict lookup.

    Raises:
        ValueError: if n < 1 or cache_size < 0.
    """
    if n < 1:
        raise ValueError(f"number of partitions must be positive, not {n}")
    if cache_size < 0:
        raise ValueError(f"cache size must not be negative, not {cache_size}")
    cache: dict[Key, int] = {}

    def partition_of(key: Key) -> int:
        part = cache.get(key)
        if part is None:
            h = geryon_hash_bytes(key) if isinstance(key, bytes) else geryon_hash(key)
            part = (h & 0x7FFFFFFF) % n
            if len(cache) >= cache_size:
                cache.clear()
            if cache_size:
                cache[key] = part
        return part

    return partition_of
