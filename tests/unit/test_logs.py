"""The log throttle: a repeated warning shows once a minute, saying how often it came."""

from __future__ import annotations

import logging

from ecmem.logs import Tally, Throttle


def record(msg: str, *args: object, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("coordinator.rebuild", level, __file__, 1, msg, args, None)


def test_a_repeated_warning_shows_once_per_interval_with_its_count() -> None:
    now = [0.0]
    t = Throttle(every=60.0, clock=lambda: now[0])
    line = "rebuild of region %s slab %d failed, will retry next pass: %s"
    assert t.filter(record(line, "r", 0, "too few nodes"))
    for _ in range(5):
        now[0] += 1
        assert not t.filter(record(line, "r", 0, "too few nodes"))
    assert t.filter(record(line, "r", 1, "too few nodes"))  # another slab: its own line
    assert t.filter(record(line, "r", 0, "another reason"))
    now[0] = 61.0
    again = record(line, "r", 0, "too few nodes")
    assert t.filter(again)
    assert again.getMessage().endswith("(and 5 times more in the last 61s)")


def test_info_lines_are_never_held() -> None:
    t = Throttle(every=60.0, clock=lambda: 0.0)
    assert all(t.filter(record("node %s joined", "n1", level=logging.INFO)) for _ in range(3))


def test_tally_logs_once_per_place_then_counts_with_where() -> None:
    clock = [0.0]
    lines: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("test.tally")
    logger.addHandler(Catch())
    logger.propagate = False
    tally = Tally(logger, every=60.0, clock=lambda: clock[0])
    for slab in (0, 0, 1, 2):
        tally.warn("region a", "stripes written degraded", slab, "region a slab %d: degraded", slab)
    tally.warn("region b", "stripes written degraded", 5, "region b slab %d: degraded", 5)
    assert lines == ["region a slab 0: degraded", "region b slab 5: degraded"]
    clock[0] = 61.0
    tally.warn("region a", "stripes written degraded", 3, "region a slab %d: degraded", 3)
    assert lines[-1] == (
        "region a slab 3: degraded (3 more stripes written degraded in the last 61s "
        "(at 0, 1, 2) before this)"
    )
    tally.warn("region a", "stripes written degraded", 4, "region a slab %d: degraded", 4)
    tally.flush("region b")  # nothing held for b: no line
    assert len(lines) == 3
    clock[0] = 70.0
    tally.flush("region a")
    assert lines[-1] == "region a: 1 more stripes written degraded in the last 9s (at 4)"
