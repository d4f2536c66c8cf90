"""The register linearizability checker: it passes real executions and catches bad ones."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.history import FAIL, INFO, INVOKE, OK, Event, History
from chaos.linearizable import check


def op(
    h: History,
    p: int,
    f: str,
    t0: float,
    t1: float | None,
    value: str | None,
    outcome: str = OK,
    page: int = 0,
) -> None:
    h.add(Event(p, INVOKE, f, "r", page, value if f == "write" else None, t0))
    if t1 is not None:
        h.add(Event(p, outcome, f, "r", page, value if f == "read" else None, t1))


def verdict(h: History) -> bool:
    return bool(check(h.ops()))


def test_sequential_read_of_the_last_write() -> None:
    h = History()
    op(h, 1, "write", 0, 1, "a")
    op(h, 1, "read", 2, 3, "a")
    assert verdict(h)


def test_a_value_never_written_is_caught() -> None:
    h = History()
    op(h, 1, "write", 0, 1, "a")
    op(h, 2, "read", 2, 3, "b")
    assert not verdict(h)


def test_a_stale_read_is_caught() -> None:
    h = History()
    op(h, 1, "write", 0, 1, "a")
    op(h, 1, "write", 2, 3, "b")
    op(h, 2, "read", 4, 5, "a")
    v = check(h.ops())
    assert not v and v.page == 0 and v.ops is not None and len(v.ops) == 3


def test_concurrent_write_may_or_may_not_be_seen() -> None:
    for seen in ("a", "b"):
        h = History()
        op(h, 1, "write", 0, 1, "a")
        op(h, 1, "write", 2, 6, "b")
        op(h, 2, "read", 3, 4, seen)
        assert verdict(h)


def test_reads_may_not_go_back_in_time() -> None:
    h = History()
    op(h, 1, "write", 0, 1, "a")
    op(h, 1, "write", 2, 10, "b")  # concurrent with both reads
    op(h, 2, "read", 3, 4, "b")
    op(h, 2, "read", 5, 6, "a")  # after seeing b, a is gone
    assert not verdict(h)


def test_unknown_writes_may_take_effect_late_or_never() -> None:
    for seen in ("x", None):
        h = History()
        op(h, 1, "write", 0, None, "x", INFO)  # crashed: no completion
        op(h, 2, "read", 5, 6, seen)
        assert verdict(h)


def test_a_failed_write_must_not_be_seen() -> None:
    h = History()
    op(h, 1, "write", 0, 1, "x", FAIL)
    op(h, 2, "read", 2, 3, "x")
    assert not verdict(h)


def test_pages_are_checked_apart() -> None:
    h = History()
    op(h, 1, "write", 0, 1, "a", page=0)
    op(h, 1, "write", 2, 3, "b", page=1)
    op(h, 2, "read", 4, 5, "a", page=0)
    op(h, 2, "read", 6, 7, "a", page=1)
    v = check(h.ops())
    assert not v and v.page == 1


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 12))
def test_real_register_executions_pass(seed: int, n: int) -> None:
    """Run a register with random overlapping operations, each taking effect at a random
    point inside its interval: the recorded history must pass."""
    rng = random.Random(seed)
    value: str | None = None
    calls = []
    for i in range(n):
        start = rng.uniform(0, 10)
        point = start + rng.uniform(0, 2)
        end = point + rng.uniform(0, 2)
        f = rng.choice(["read", "write"])
        calls.append((point, i, start, end, f, f"v{i}"))
    # Apply in linearization order to learn what each read returned.
    results = {}
    for _point, i, _start, _end, f, v in sorted(calls):
        if f == "write":
            value = v
        results[i] = value if f == "read" else v
    # One operation at a time per process: each gets its own process id.
    h = History()
    events = []
    for _point, i, start, end, f, v in calls:
        events.append((start, 0, Event(i, INVOKE, f, "r", 0, v if f == "write" else None, start)))
        out = results[i] if f == "read" else None
        events.append((end, 1, Event(i, OK, f, "r", 0, out, end)))
    for _, _, e in sorted(events, key=lambda x: (x[0], x[1])):
        h.add(e)
    assert verdict(h)
