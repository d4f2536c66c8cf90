"""A writer's book of unfolded page patches: which stripes are due for a fold (by the
fold rule: enough patches holding enough of the stripe, or very many; or the biggest
ones while the bytes are over their bound), and that folding what is due always
brings the bytes back under the bound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ecmem.pagelog import FoldRule, Unfolded

KiB = 1024
SD = 64 * KiB


def rule(after: int) -> FoldRule:
    return FoldRule(after=after, share=1 << 40, most=after)  # by count alone


def book(*patches: tuple[int, int, int]) -> Unfolded:
    u = Unfolded(stripe_data=SD)
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
    assert u.due(rule(4), 64 * KiB) == []


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
        assert book(*patches).due(rule(fold_after), bound) == want, (patches, bound)


@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(1, 64 * KiB)), min_size=1, max_size=300),
    st.integers(2, 64),
    st.integers(64 * KiB, 1 << 20),
)
def test_folding_what_is_due_brings_the_bytes_under_the_bound(
    patches: list[tuple[int, int]], fold_after: int, bound: int
) -> None:
    u = Unfolded(stripe_data=SD)
    fold = FoldRule(after=fold_after)
    for version, (stripe, nbytes) in enumerate(patches, 1):
        u.add(stripe, version, nbytes)
        assert u.total == sum(held for _, _, held in u.stripes.values())
        for s in u.due(fold, bound):
            u.folded(s)
        assert u.total < bound
        assert not any(fold.due(c, held, SD) for _, c, held in u.stripes.values())


def test_the_fold_rule_waits_longer_for_bigger_stripes() -> None:
    fold = FoldRule()  # 64 patches holding a quarter of the stripe, or 1024
    cases = [
        # (count, bytes, stripe data, due)
        (63, 1 << 20, 64 * KiB, False),  # never before 64
        (64, 64 * 4 * KiB, 64 * KiB, True),
        (64, 64 * 4 * KiB, 4 << 20, False),  # 256 KiB of a 4 MiB stripe: not yet
        (256, 256 * 4 * KiB, 4 << 20, True),  # a quarter of it
        (1024, 1024 * 64, 4 << 20, True),  # very many small ones
        (1023, 1023 * 64, 4 << 20, False),
    ]
    for count, nbytes, sd, want in cases:
        assert fold.due(count, nbytes, sd) is want, (count, nbytes, sd)


def test_fold_first_looks_at_the_patches_about_to_be_sent() -> None:
    u = book(*[(1, v, 4 * KiB) for v in range(62)])
    fold = FoldRule(after=64)
    assert not u.fold_first(1, 1, 4 * KiB, fold, 1 << 30)
    assert u.fold_first(1, 2, 8 * KiB, fold, 1 << 30)  # the second would make it due
    assert u.fold_first(2, 1, 4 * KiB, fold, u.total)  # the bytes reach the bound
