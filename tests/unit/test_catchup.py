"""What a writer's catch-up of handed-off slots rewrites, and which marks it sees."""

from __future__ import annotations

import pytest

from ecmem.catchup import marks, stripes_to_fold
from ecmem.meta.model import RegionMeta

SD = 4 * 4096  # stripe data of ec:4+2 with 4 KiB chunks


def region(written: list[tuple[int, int]], lost: list[tuple[int, int]], stripes: int) -> RegionMeta:
    m = RegionMeta("r", "0" * 16, "ec:4+2", stripes * SD, 4096, 8)
    m.written, m.lost = written, lost
    m.slabs = {s: [(f"n{i}", "x") for i in range(6)] for s in range(-(-stripes // 8))}
    return m


@pytest.mark.parametrize(
    ("written", "lost", "stripes", "slab", "want"),
    [
        ([(0, 8)], [], 8, 0, list(range(8))),
        ([(2, 5)], [], 8, 0, [2, 3, 4]),  # holes need nothing
        ([(0, 8)], [(3, 5)], 8, 0, [0, 1, 2, 5, 6, 7]),  # lost stripes are not rewritten
        ([(0, 16)], [], 12, 1, [8, 9, 10, 11]),  # not past the region's size
        ([(0, 4)], [], 16, 1, []),
    ],
)
def test_stripes_to_fold(
    written: list[tuple[int, int]],
    lost: list[tuple[int, int]],
    stripes: int,
    slab: int,
    want: list[int],
) -> None:
    assert stripes_to_fold(region(written, lost, stripes), slab) == want


def test_marks_name_each_partial_slot_of_a_slab_with_holder_and_version() -> None:
    m = region([(0, 16)], [], 16)
    m.hand_off(1, 2, ("n9", "y"), 77)
    m.hand_off(0, 4, ("n8", "z"), 55)
    assert marks(m, 1) == {2: (("n9", "y"), 77)}
    assert marks(m, 0) == {4: (("n8", "z"), 55)}
    m.settle_slots([(1, 2)])
    assert marks(m, 1) == {}
