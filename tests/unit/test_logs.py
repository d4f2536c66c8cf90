"""The log throttle: a repeated warning shows once a minute, saying how often it came."""

from __future__ import annotations

import logging

from ecmem.logs import Throttle


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
