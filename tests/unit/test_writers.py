"""A writer's order of writes (ecmem/writers.py): its commit point and state table."""

from __future__ import annotations

import pytest

from ecmem.errors import Fenced, ProtocolError
from ecmem.writers import State, Writer

E = 3  # epoch


def test_commit_point_follows_staged_writes_and_stops_at_a_failed_one() -> None:
    w = Writer("r", E, state=State.WRITING)
    a, b, c = (w.begin(0, 0, 10) for _ in range(3))
    assert w.ready() == (E << 32)  # nothing staged yet
    w.finish(a, True)
    assert w.ready() == a.version
    w.finish(b, False, "node gone")
    w.finish(c, True)
    # c is staged, but b failed before it: nothing at or past b may be committed.
    assert w.ready() == a.version
    assert a.commit()[0] == a.version
    with pytest.raises(Fenced):
        w.begin(0, 0, 10)


def test_state_table() -> None:
    w = Writer("r", E)
    w.to(State.WRITING)
    w.fence_off("a newer writer")
    assert w.state is State.STOPPED
    w.to(State.RELEASED)
    w.fence_off("late news from kazoo's thread")  # tolerated in any state
    with pytest.raises(ProtocolError):
        w.to(State.WRITING)
    with pytest.raises(Fenced):
        w.begin(0, 0, 1)
