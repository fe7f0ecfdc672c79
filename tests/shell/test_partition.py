"""Geryon's partition hash: hand-computed values, 32-bit wrap, and a naive reference."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from shell.partition import (
    geryon_hash,
    geryon_hash_bytes,
    geryon_partition,
    geryon_partition_bytes,
    geryon_partitioner,
)


def naive_hash(key: str) -> int:
    """inferno-lab 37 intermediate.b `fun1`, transcribed: Limbo int is 32 bits."""
    h = 0
    for c in key:
        h = (65599 * h + ord(c)) & 0xFFFFFFFF
    return h


def polynomial_hash(key: str) -> int:
    """The same hash written as a polynomial in big integers, reduced once."""
    m = len(key)
    return int(sum(ord(c) * 65599 ** (m - 1 - i) for i, c in enumerate(key)) % 2**32)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("", 0),
        ("a", 97),
        ("ab", 65599 * 97 + 98),  # 6363201, no wrap yet
        ("abc", (65599 * 6363201 + 99) % 2**32),  # first wrap
        ("abc", 807794786),
        ("hello", 684824882),
        ("€", 0x20AC),  # a code point, not its UTF-8 bytes
        ("é€😀", 2473729213),
    ],
)
def test_hash_hand_computed(key: str, expected: int) -> None:
    assert geryon_hash(key) == expected
    assert geryon_hash_bytes(key.encode("utf-8")) == expected


@pytest.mark.parametrize("length", [23, 24, 25, 255, 256, 257, 511, 512, 513, 3000])
def test_hash_wraps_on_long_keys(length: int) -> None:
    ascii_key = "".join(chr(33 + (i * 7) % 90) for i in range(length))
    wide_key = "".join(chr(0x10000 + (i * 977) % 0x100000) for i in range(length))
    for key in (ascii_key, wide_key):
        h = geryon_hash(key)
        assert 0 <= h < 2**32
        assert h == naive_hash(key) == polynomial_hash(key)


def test_hash_of_x300_is_known() -> None:
    assert geryon_hash("x" * 300) == 1723372544


def test_invalid_utf8_uses_surrogateescape() -> None:
    assert geryon_hash_bytes(b"a\xff") == naive_hash("a\udcff")


def test_partition_masks_the_sign_bit() -> None:
    # "abcde" hashes to 3176136803 > 2**31: the seed drops bit 31 before the remainder.
    assert geryon_hash("abcde") == 3176136803
    assert geryon_partition("abcde", 10) == (3176136803 - 2**31) % 10 == 5
    assert geryon_partition("a", 5) == 97 % 5


@given(st.text(), st.integers(min_value=1, max_value=2**31))
def test_partition_in_range_and_equals_reference(key: str, n: int) -> None:
    p = geryon_partition(key, n)
    assert 0 <= p < n
    assert p == (naive_hash(key) & 0x7FFFFFFF) % n
    assert geryon_partition_bytes(key.encode("utf-8"), n) == p


@given(st.binary(max_size=300))
def test_bytes_hash_equals_hash_of_decoded(key: bytes) -> None:
    assert geryon_hash_bytes(key) == naive_hash(key.decode("utf-8", "surrogateescape"))


@given(st.lists(st.one_of(st.text(max_size=30), st.binary(max_size=30)), max_size=50), st.integers(1, 20))
def test_partitioner_equals_function_with_small_cache(keys: list[str | bytes], n: int) -> None:
    part = geryon_partitioner(n, cache_size=3)
    for key in keys + keys:
        expected = geryon_partition_bytes(key, n) if isinstance(key, bytes) else geryon_partition(key, n)
        assert part(key) == expected


def test_partitioner_without_cache() -> None:
    part = geryon_partitioner(5, cache_size=0)
    assert [part("a"), part(b"a"), part("a")] == [97 % 5] * 3


@pytest.mark.parametrize("n", [0, -1])
def test_partitioner_rejects_non_positive_n(n: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        geryon_partitioner(n)


def test_partitioner_rejects_negative_cache() -> None:
    with pytest.raises(ValueError, match="cache"):
        geryon_partitioner(3, cache_size=-1)
