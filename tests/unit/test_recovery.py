"""Recovery's choices (ecmem/recovery.py), by tables of cases: a wrong rule fails one."""

from __future__ import annotations

import pytest

from ecmem.recovery import Staged, choose_kept, fence_quorum, next_after, unfenced_slabs

E1, E2 = 1 << 32, 2 << 32  # epoch 1 and 2, seq 0
K = 2  # fragments a stripe needs


def whole(version: int, first: int, last: int, end: int, k: int = K) -> list[Staged]:
    """A write staged with ``k`` fragments on each of its stripes."""
    return [
        Staged(version, s, i, (first, last, end)) for s in range(first, last + 1) for i in range(k)
    ]


@pytest.mark.parametrize(
    ("lac", "staged", "kept", "size", "dropped"),
    [
        # Nothing staged above the commit point: nothing changes.
        (E1 + 3, [], E1 + 3, 100, []),
        (E1 + 3, whole(E1 + 2, 0, 0, 50) + whole(E1 + 3, 0, 0, 60), E1 + 3, 100, []),
        # Consecutive whole writes are kept; the size grows to the last one's end.
        (E1 + 3, whole(E1 + 4, 0, 0, 150) + whole(E1 + 5, 1, 2, 300), E1 + 5, 300, []),
        # A gap: nothing after it is kept.
        (E1 + 3, whole(E1 + 4, 0, 0, 10) + whole(E1 + 6, 0, 0, 400), E1 + 4, 100, [E1 + 6]),
        # A write with a stripe short of k fragments stops recovery there.
        (
            E1 + 3,
            whole(E1 + 4, 0, 1, 10) + whole(E1 + 5, 0, 0, 10)[:1] + whole(E1 + 6, 0, 0, 10),
            E1 + 4,
            100,
            [E1 + 5, E1 + 6],
        ),
        # Every stripe of a write's extent must be whole, not just the ones listed.
        (
            E1 + 3,
            whole(E1 + 4, 0, 0, 10) + [Staged(E1 + 4, 0, 0, (0, 1, 10))],
            E1 + 3,
            100,
            [E1 + 4],
        ),
        # A new epoch's first write follows the old epoch's last; its second does not.
        (E1 + 3, whole(E1 + 4, 0, 0, 10) + whole(E2 + 1, 0, 0, 10), E2 + 1, 100, []),
        (E1 + 3, whole(E2 + 2, 0, 0, 10), E1 + 3, 100, [E2 + 2]),
    ],
)
def test_choose_kept(
    lac: int, staged: list[Staged], kept: int, size: int, dropped: list[int]
) -> None:
    out = choose_kept(lac, 100, staged, K)
    assert (out.kept, out.size, out.dropped) == (kept, size, dropped)


def test_wrote_is_the_kept_writes_stripes() -> None:
    out = choose_kept(E1, 0, whole(E1 + 1, 0, 1, 10) + whole(E1 + 3, 5, 5, 10), K)
    assert out.kept == E1 + 1 and out.wrote() == [(0, 2)]


@pytest.mark.parametrize(
    ("prev", "version", "follows"),
    [
        (E1 + 3, E1 + 4, True),
        (E1 + 3, E1 + 5, False),
        (E1 + 3, E2 + 1, True),
        (E1 + 3, E2 + 2, False),
        (E2 + 1, E1 + 2, False),
    ],
)
def test_next_after(prev: int, version: int, follows: bool) -> None:
    assert next_after(prev, version) is follows


@pytest.mark.parametrize(
    ("width", "min_durable", "quorum"), [(6, 5, 2), (6, 6, 1), (6, 4, 3), (3, 2, 2)]
)
def test_fence_quorum(width: int, min_durable: int, quorum: int) -> None:
    q = fence_quorum(width, min_durable)
    assert q == quorum
    # The point of it: the unfenced nodes are always fewer than a write needs.
    assert width - q < min_durable


def test_unfenced_slabs() -> None:
    slabs = [["a", "b", "c"], ["a", "", "d"], ["e", "f", "g"]]
    assert unfenced_slabs(slabs, {"a", "b", "d"}, 2) == [2]
    assert unfenced_slabs(slabs, {"a"}, 1) == [2]
