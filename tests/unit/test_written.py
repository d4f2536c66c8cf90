"""Which stripes a region records as written: the writer's recording and what a
recovery makes of it (ecmem/recovery.py), by tables of cases."""

from __future__ import annotations

import pytest

from ecmem.recovery import record_writes, settle_written

V = 1 << 32  # epoch 1, seq 0


@pytest.mark.parametrize(
    ("written", "lost", "pending", "todo", "confirmed", "want"),
    [
        # A first write of stripes 0-1: written, and pending until a commit round covers it.
        ([], [], [], [(0, 2, V + 1)], V, ([(0, 2)], [(0, 2, V + 1)], [])),
        # Rewriting written stripes adds nothing pending.
        ([(0, 4)], [], [], [(1, 2, V + 5)], V + 4, ([(0, 4)], [], [])),
        # Only the new part of a write is pending; confirmed entries go.
        (
            [(0, 4)],
            [],
            [(3, 4, V + 3)],
            [(3, 6, V + 5)],
            V + 4,
            ([(0, 6)], [(4, 6, V + 5)], []),
        ),
        # Entries not yet confirmed stay.
        (
            [(0, 4)],
            [],
            [(3, 4, V + 3)],
            [(5, 6, V + 4)],
            V + 2,
            ([(0, 4), (5, 6)], [(3, 4, V + 3), (5, 6, V + 4)], []),
        ),
        # A rewrite of lost stripes says which, for the commit round that covers it.
        ([(0, 8)], [(2, 5)], [], [(2, 4, V + 9)], V + 8, ([(0, 8)], [], [(2, 4, V + 9)])),
    ],
)
def test_record_writes(written, lost, pending, todo, confirmed, want) -> None:  # type: ignore[no-untyped-def]
    assert record_writes(written, lost, pending, todo, confirmed) == want


@pytest.mark.parametrize(
    ("written", "pending", "dropped", "wrote", "want"),
    [
        # Nothing pending: what recovery kept is added.
        ([(0, 2)], [], set(), [(2, 3)], [(0, 3)]),
        # A dropped write's first stripes are holes again.
        ([(0, 6)], [(4, 6, V + 5)], {V + 5}, [], [(0, 4)]),
        # A write recovery did not see staged was committed (or lost): it stays written.
        ([(0, 6)], [(4, 6, V + 5)], set(), [], [(0, 6)]),
        ([(0, 6)], [(4, 6, V + 4)], {V + 5}, [], [(0, 6)]),
        # A stripe first written by a kept write and again by a dropped one stays.
        ([(0, 6)], [(4, 6, V + 3), (5, 6, V + 6)], {V + 6}, [], [(0, 6)]),
        # Dropped, but a kept write covers part of it.
        ([(0, 8)], [(4, 8, V + 9)], {V + 9}, [(4, 5)], [(0, 5)]),
    ],
)
def test_settle_written(written, pending, dropped, wrote, want) -> None:  # type: ignore[no-untyped-def]
    assert settle_written(written, pending, dropped, wrote) == want
