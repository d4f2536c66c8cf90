"""Retry spacing: doubling from the first gap up to the cap, reset by a success."""

from __future__ import annotations

from coordinator.backoff import Backoff


def test_a_failing_key_waits_longer_each_time_up_to_the_cap_and_not_after_success() -> None:
    now = [100.0]
    b = Backoff(first=0.5, most=4.0, clock=lambda: now[0])
    assert b.wait("r/0") == 0.0
    assert [b.failed("r/0") for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert b.wait("r/0") == 4.0 and b.wait("r/1") == 0.0  # keys are apart
    now[0] += 3.0
    assert b.wait("r/0") == 1.0
    b.succeeded("r/0")
    assert b.wait("r/0") == 0.0 and b.failed("r/0") == 0.5
