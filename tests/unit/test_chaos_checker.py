"""The write checker passes a prefix and names each kind of broken history."""

from __future__ import annotations

from chaos.checker import Open, Write, check_region
from chaos.history import FAIL, INFO, OK


def w(
    seq: int, pages: dict[int, str], outcome: str = OK, epoch: int = 1, start: float = 0.0
) -> Write:
    return Write(epoch, seq, pages, outcome, start)


WRITES = [
    w(1, {0: "a1", 1: "a1"}),
    w(2, {1: "b2", 2: "b2"}),
    w(3, {0: "c3"}, INFO),  # unknown: may or may not be there
    w(4, {3: "d4", 4: "d4"}, INFO),
]


def test_a_prefix_including_every_acknowledged_write_passes() -> None:
    for final, upto in (
        ({0: "a1", 1: "b2", 2: "b2"}, (1, 2)),
        ({0: "c3", 1: "b2", 2: "b2"}, (1, 3)),
        ({0: "c3", 1: "b2", 2: "b2", 3: "d4", 4: "d4"}, (1, 4)),
    ):
        r = check_region(WRITES, final)
        assert r.ok, r.problems
        assert r.applied_up_to == upto


def test_a_lost_acknowledged_write_is_named() -> None:
    r = check_region(WRITES, {0: "a1", 1: "a1"})
    assert not r.ok
    assert any("acknowledged write (1, 2) is lost" in p for p in r.problems), r.problems


def test_a_torn_write_is_named() -> None:
    r = check_region(WRITES, {0: "c3", 1: "b2", 2: "b2", 3: "d4"})
    assert not r.ok
    assert any("write (1, 4) is torn" in p for p in r.problems), r.problems


def test_a_failed_write_that_shows_is_named() -> None:
    writes = [w(1, {0: "a"}), w(2, {0: "x"}, FAIL)]
    r = check_region(writes, {0: "x"})
    assert not r.ok
    assert any("failed, yet" in p for p in r.problems), r.problems


def test_out_of_order_application_fails() -> None:
    writes = [w(1, {0: "a"}), w(2, {0: "b"})]
    assert not check_region(writes, {0: "a"}).ok  # the later acknowledged write is lost
    assert check_region(writes, {0: "b"}).ok


def test_a_stale_epoch_write_is_named() -> None:
    writes = [
        w(1, {0: "old"}, epoch=1, start=0.0),
        w(1, {1: "new"}, epoch=2, start=5.0),
        w(2, {2: "zombie"}, epoch=1, start=6.0),  # the old writer woke up after the takeover
    ]
    opens = [Open(1, 0.0), Open(2, 4.0)]
    r = check_region(writes, {0: "old", 1: "new", 2: "zombie"}, opens)
    assert not r.ok
    assert any("stale-epoch write (1, 2)" in p for p in r.problems), r.problems
    fenced = [writes[0], writes[1], w(2, {2: "zombie"}, FAIL, epoch=1, start=6.0)]
    assert check_region(fenced, {0: "old", 1: "new"}, opens).ok


def test_a_refused_stale_write_must_not_show() -> None:
    opens = [Open(1, 0.0), Open(2, 4.0)]
    writes = [
        w(1, {0: "old"}, epoch=1, start=0.0),
        w(1, {1: "new"}, epoch=2, start=5.0),
        w(2, {2: "zombie"}, INFO, epoch=1, start=6.0),  # refused, the client could not tell
    ]
    assert check_region(writes, {0: "old", 1: "new"}, opens).ok
    r = check_region(writes, {0: "old", 1: "new", 2: "zombie"}, opens)
    assert not r.ok and any("is in the region" in p for p in r.problems), r.problems
