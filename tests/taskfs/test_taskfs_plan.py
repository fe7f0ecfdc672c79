"""The pure parts: the spread rule, least-loaded placement, matching, counts, input dealing."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geryon.taskfs.tree import Candidate, Count, add_counts, format_counts, free_matching, least_loaded, matches, spread
from geryon.taskfs.client import NoResources, OutputStream, ProtocolError, Scatter, unpack_frame


def cands(*free: int, loads: tuple[float, ...] = ()) -> list[Candidate]:
    return [Candidate(f"c{i}", f, loads[i] if loads else 0.0, ncpu=max(f, 1)) for i, f in enumerate(free)]


def test_spread_is_the_taskfs_rule() -> None:
    assert spread(7, cands(10, 10, 10)) == [3, 2, 2]          # N/k each, the remainder to the first
    assert spread(2, cands(5, 5, 5, 5)) == [1, 1, 0, 0]       # more children than N: one each
    assert spread(4, cands(1, 2, 1)) == [1, 2, 1]             # the first cannot take its share
    assert spread(3, cands(0, 5, 5)) == [0, 2, 1]             # a full candidate does not count
    assert spread(0, cands(1, 1)) == [0, 0]


def test_spread_that_cannot_be_met_says_so() -> None:
    with pytest.raises(NoResources, match=r"^no resources matching request: 5 instances wanted, 4 free$"):
        spread(5, cands(1, 2, 1))
    with pytest.raises(NoResources):
        spread(1, [])


@given(st.integers(0, 40), st.lists(st.integers(0, 8), max_size=8))
def test_spread_places_exactly_n_within_capacity(n: int, free: list[int]) -> None:
    cs = cands(*free)
    if sum(free) < n:
        with pytest.raises(NoResources):
            spread(n, cs)
        return
    alloc = spread(n, cs)
    assert sum(alloc) == n and all(0 <= a <= f for a, f in zip(alloc, free))


def test_least_loaded_fills_the_idle_node_first() -> None:
    assert least_loaded(2, cands(2, 2, loads=(3.0, 0.1))) == [0, 2]
    assert least_loaded(3, cands(2, 2, loads=(0.0, 0.0))) == [2, 1]       # ties: in order, load rises
    assert least_loaded(4, cands(2, 2, loads=(9.0, 0.0))) == [2, 2]       # capacity still holds
    with pytest.raises(NoResources):
        least_loaded(5, cands(2, 2))


def test_os_and_arch_matching() -> None:
    assert matches("Linux", None) and matches("Linux", "*") and matches("Linux", "")
    assert matches("Linux", "linux") and not matches("Linux", "Plan9")
    assert matches("386", "x86_64", arch=True) and matches("arm64", "aarch64", arch=True)
    assert not matches("386", "arm64", arch=True) and not matches("386", "x86_64")


def test_counts_add_up_and_print_as_the_seed() -> None:
    total = add_counts([Count("Linux", "386", 1, 2, 2)], [Count("Linux", "386", 3, 3, 1), Count("Nt", "386", 1, 4, 4)])
    assert total == [Count("Linux", "386", 4, 5, 3), Count("Nt", "386", 1, 4, 4)]
    assert format_counts(total) == "Linux 386 4\nNt 386 1\n"
    assert free_matching(total, "Linux", "x86_64") == 3 and free_matching(total, None, "*") == 7


def test_scatter_deals_lines_round_robin() -> None:
    s = Scatter(3)
    assert s.feed(b"a\nb\nc\nd\npart") == [(0, b"a\nd\n"), (1, b"b\n"), (2, b"c\n")]
    assert s.feed(b"ial\n") == [(1, b"partial\n")]
    assert s.feed(b"end") == [] and s.flush() == [(2, b"end")] and s.flush() == []


def test_output_stream_reads_like_a_pipe() -> None:
    out = OutputStream()
    out.feed(b"one\ntw")
    assert out.read(2) == b"on" and out.readline() == b"e\n"
    with pytest.raises(TimeoutError):
        out.readline(timeout=0.01)
    out.feed(b"o\n")
    out.end()
    assert list(out) == [b"two\n"] and out.read() == b"" and out.at_end


def test_short_frame_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        unpack_frame(b"\x00\x00")
