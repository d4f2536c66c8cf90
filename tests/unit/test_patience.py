"""A read waits out a stripe short of fragments for a bounded time, retries at once
when the placement moved, and reports data known lost at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ecmem.errors import DataLostError, DataUnavailableError
from ecmem.patience import LONGEST_WAIT, may_come_back, patiently, waits


@pytest.mark.parametrize(
    ("patience", "expected"),
    [
        (0.0, []),
        (0.05, [0.05]),
        (0.1, [0.05, 0.05]),
        (0.5, [0.05, 0.1, 0.2, 0.15]),
        (2.0, [0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.25]),
    ],
)
def test_the_pauses_double_and_add_up_to_the_patience(
    patience: float, expected: list[float]
) -> None:
    got = list(waits(patience))
    assert got == pytest.approx(expected)
    assert max(got, default=0) <= LONGEST_WAIT


def unavailable() -> DataUnavailableError:
    return DataUnavailableError("r", 0, 3, {0: "node n1 is slow to answer"}, 4)


class Script:
    """An attempt that fails ``fails`` times, then returns; pauses are recorded."""

    def __init__(
        self, fails: int, moves: list[bool], error: type = DataUnavailableError, hope: bool = True
    ) -> None:
        self.fails, self.moves, self.error, self.hope = fails, list(moves), error, hope
        self.tries: list[int] = []
        self.slept: list[float] = []

    async def attempt(self, tries: int) -> str:
        self.tries.append(tries)
        if len(self.tries) <= self.fails:
            if self.error is DataLostError:
                raise DataLostError("r", 0, 3, {0: "gone"}, 4)
            raise unavailable()
        return "bytes"

    async def moved(self) -> bool:
        return self.moves.pop(0) if self.moves else False

    def hopeful(self, exc: DataUnavailableError) -> bool:
        return self.hope

    async def sleep(self, s: float) -> None:
        self.slept.append(s)


def run(s: Script, patience: float) -> str:
    return asyncio.run(patiently(s.attempt, s.moved, s.hopeful, s.sleep, patience))


def test_a_read_that_succeeds_after_two_failures_waited_twice() -> None:
    s = Script(2, [])
    assert run(s, 5.0) == "bytes"
    assert s.tries == [0, 1, 2] and s.slept == pytest.approx([0.05, 0.1])


def test_a_moved_placement_is_tried_at_once_but_only_once_in_a_row() -> None:
    s = Script(3, [True, True, True])
    assert run(s, 5.0) == "bytes"
    # moved -> at once; moved again -> not asked (waits); moved -> at once
    assert s.slept == pytest.approx([0.05])


def test_patience_spent_raises_the_last_error_saying_how_long_it_waited() -> None:
    s = Script(100, [])
    with pytest.raises(DataUnavailableError) as err:
        run(s, 0.5)
    assert "still so after" in str(err.value)
    assert sum(s.slept) == pytest.approx(0.5)


def test_no_patience_fails_at_first() -> None:
    s = Script(100, [])
    with pytest.raises(DataUnavailableError) as err:
        run(s, 0.0)
    assert s.tries == [0] and "waiting" not in str(err.value)


def test_lost_data_is_reported_at_once() -> None:
    s = Script(100, [True], DataLostError)
    with pytest.raises(DataLostError):
        run(s, 5.0)
    assert s.tries == [0] and s.slept == []


def test_a_stripe_without_k_live_holders_is_reported_at_once() -> None:
    s = Script(100, [], hope=False)
    with pytest.raises(DataUnavailableError) as err:
        run(s, 5.0)
    assert s.tries == [0] and "waiting" not in str(err.value)


@pytest.mark.parametrize(
    ("holders", "live", "hope"),
    [
        (["a", "b", "c", "d", "e", "f"], "abcdef", True),
        (["a", "b", "c", "d", "e", "f"], "abcd", True),  # two dead: k=4 live
        (["a", "b", "c", "d", "e", "f"], "abc", False),  # three dead
        (["a", "", "c", "d", "e", ""], "acd", True),  # a vacant slot may be filled
        (["a", "", "", "d", "e", "f"], "a", False),  # three dropped holders
    ],
)
def test_waiting_helps_only_with_k_live_holders(holders: list[str], live: str, hope: bool) -> None:
    assert may_come_back(holders, set(live), 4) is hope


def test_a_node_zookeeper_dropped_a_moment_ago_is_still_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ZooKeeper failover longer than the nodes' sessions drops every node until they
    register again: reads keep hoping for a while, not for ever."""
    from types import SimpleNamespace

    from ecmem import members
    from ecmem.meta.model import NodeInfo

    class Zk:
        def get(self, path: str) -> tuple[bytes, None]:
            return NodeInfo(path.rsplit("/", 1)[1], "h:1", 1).to_json(), None

        def ChildrenWatch(self, _path: str, fn: Any) -> None:  # noqa: N802 (kazoo's name)
            self.fn = fn

    zk = Zk()
    m = members.Members(
        zk, SimpleNamespace(paths=SimpleNamespace(nodes="/n", node=lambda n: f"/n/{n}"))
    )  # type: ignore[arg-type]
    m.watch()
    now = [100.0]
    monkeypatch.setattr(members.time, "monotonic", lambda: now[0])
    zk.fn(["a", "b", "c"])
    zk.fn(["a"])
    assert m.lately_live(10.0) == {"a", "b", "c"}
    now[0] += 11
    assert m.lately_live(10.0) == {"a"}


def test_a_node_zookeeper_just_dropped_is_still_asked_at_its_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failover drops every node's registration for a moment: requests still reach
    them at their last address for DROPPED_REACHABLE seconds, then no more."""
    from ecmem import members
    from ecmem.meta.model import NodeInfo

    m = members.Members(None, None)  # type: ignore[arg-type]
    now = [100.0]
    monkeypatch.setattr(members.time, "monotonic", lambda: now[0])
    m.update({"a": NodeInfo("a", "h:1", 1), "b": NodeInfo("b", "h:2", 1)})
    m.update({"a": NodeInfo("a", "h:1", 1)})
    assert m.address("b") == "h:2" and m.address("a") == "h:1"
    assert "b" not in m.addresses()  # heartbeats and stray searches: the live ones
    now[0] += members.DROPPED_REACHABLE + 1
    assert m.address("b") is None and m.address("nobody") is None
