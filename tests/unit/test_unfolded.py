"""A writer's book of unfolded page patches: which stripes are due for a fold (after
FOLD_AFTER patches, or the biggest ones while the bytes are over their bound), and
that folding what is due always brings the bytes back under the bound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ecmem.pagelog import Unfolded

KiB = 1024


def book(*patches: tuple[int, int, int]) -> Unfolded:
    u = Unfolded()
    for stripe, version, nbytes in patches:
        u.add(stripe, version, nbytes)
    return u


def test_counts_newest_and_bytes_per_stripe() -> None:
    u = book((3, 10, 4 * KiB), (3, 12, 4 * KiB), (5, 11, KiB))
    assert (u.newest(3), u.count(3), u.newest(5), u.count(5)) == (12, 2, 11, 1)
    assert u.total == 9 * KiB and u.newest(7) == 0 and u.count(7) == 0
    u.folded(3)
    assert u.total == KiB and u.count(3) == 0
    u.folded(3)  # twice is harmless
    assert u.total == KiB


def test_a_stuck_stripe_is_written_whole_and_not_counted() -> None:
    u = book((2, 5, 8 * KiB))
    u.stuck(2, 40)
    assert u.newest(2) == 40 and u.count(2) == 0 and u.total == 0
    assert u.due(4, 64 * KiB) == []


def test_due_table() -> None:
    cases = [
        # (patches, fold_after, bound, due)
        ([(1, 1, KiB)] * 3, 4, 1 << 20, []),
        ([(1, 1, KiB)] * 4, 4, 1 << 20, [1]),
        ([(1, 1, KiB), (2, 2, 6 * KiB), (3, 3, 3 * KiB)], 64, 10 * KiB, [2]),
        # under the bound: nothing, however many stripes
        ([(s, s, KiB) for s in range(9)], 64, 10 * KiB, []),
        # over it: biggest first, down to 7/8 of the bound
        ([(s, s, (s + 1) * KiB) for s in range(8)], 64, 32 * KiB, [7]),
        ([(s, s, 4 * KiB) for s in range(8)], 64, 16 * KiB, [0, 1, 2, 3, 4]),
    ]
    for patches, fold_after, bound, want in cases:
        assert book(*patches).due(fold_after, bound) == want, (patches, bound)


@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(1, 64 * KiB)), min_size=1, max_size=300),
    st.integers(2, 64),
    st.integers(64 * KiB, 1 << 20),
)
def test_folding_what_is_due_brings_the_bytes_under_the_bound(
    patches: list[tuple[int, int]], fold_after: int, bound: int
) -> None:
    u = Unfolded()
    for version, (stripe, nbytes) in enumerate(patches, 1):
        u.add(stripe, version, nbytes)
        assert u.total == sum(held for _, _, held in u.stripes.values())
        for s in u.due(fold_after, bound):
            u.folded(s)
        assert u.total < bound
        assert all(count < fold_after for _, count, _ in u.stripes.values())
