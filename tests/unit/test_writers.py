"""A writer's order of writes (ecmem/writers.py): its commit point and state table."""

from __future__ import annotations

import asyncio

import pytest

from ecmem.errors import Fenced, ProtocolError
from ecmem.writers import State, StripeLocks, Writer

E = 3  # epoch


def test_commit_point_follows_staged_writes_and_stops_at_a_failed_one() -> None:
    w = Writer("r", E, state=State.WRITING, published=10)
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


def test_a_write_past_the_recorded_size_is_not_committed_until_its_size_is() -> None:
    """Committed with its bytes past the recorded size, a crash would leave it half
    visible: the commit point waits for the size, the staging point does not."""
    w = Writer("r", E, state=State.WRITING, published=100)
    inside = w.begin(0, 0, 50)
    grows = w.begin(0, 1, 300)
    after = w.begin(0, 0, 60)
    for s in (inside, grows, after):
        w.finish(s, True)
    assert w.staged() == after.version  # pwrite may go on to publish the size
    assert w.ready() == inside.version  # but nothing from the growing write on commits
    assert grows.commit()[0] == inside.version  # nor rides on later writes' Puts
    w.size_published(200)  # not yet enough
    assert w.ready() == inside.version
    w.size_published(300)
    assert w.ready() == after.version
    w2 = Writer("r", E, state=State.WRITING, published=100)
    big = w2.begin(0, 1, 500)
    w2.finish(big, True)
    w2.size_published(40, exact=True)  # a truncation covers every write before it
    assert w2.ready() == big.version


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


def test_nodes_that_may_hold_a_copy_a_newer_write_went_around_are_unfit_holders() -> None:
    """A node handed a slot counts its copies from the commit point sent on: one holding
    a copy of a stripe above it that a newer write of the stripe missed would have the
    older copy read as current."""
    w = Writer("r", E, state=State.WRITING, published=1 << 30)
    a = w.begin(0, 1, 10)  # stripes 0-1: slab 0 of slabs of 4 stripes
    a.nodes |= {"n1", "n2", "n5"}
    w.finish(a, True)
    assert w.unfit_holders(0, 4) == set()  # the newest copies: nothing went around them
    b = w.begin(1, 1, 10)  # stripe 1 again, in flight: n1 refused it, n2 not sent it
    b.nodes |= {"n1", "n5", "n6"}
    b.refused.add("n1")
    c = w.begin(6, 6, 10)  # slab 1
    c.nodes |= {"n3"}
    assert w.unfit_holders(0, 4) == {"n1", "n2"}
    assert w.unfit_holders(1, 4) == set() and w.unfit_holders(2, 4) == set()
    w.finish(b, True)
    assert w.unfit_holders(0, 4) == {"n1", "n2"}  # staged, not yet told committed
    w.commit_point()  # told: every write staged so far (c is still in flight)
    assert w.unfit_holders(0, 4) == set()  # their copies count from above b now


def test_a_node_that_missed_a_commit_left_the_slabs_of_the_writes_it_staged() -> None:
    w = Writer("r", E, state=State.WRITING, published=1 << 30)
    for first, last in ((0, 0), (9, 13)):
        s = w.begin(first, last, 10)
        s.nodes |= {"n1"} if first == 0 else {"n1", "n2"}
        w.finish(s, True)
    assert w.uncommitted_on("n1", w.version, 4) == {0, 2, 3}
    assert w.uncommitted_on("n2", w.version, 4) == {2, 3}
    assert w.uncommitted_on("n2", w.version - 1, 4) == set()
    w.spans.clear()  # stripes unknown: every slab
    assert w.uncommitted_on("n1", w.version, 4) is None


def test_a_claim_from_a_stripe_on_waits_for_writes_there_and_holds_back_later_ones() -> None:
    async def run() -> None:
        locks = StripeLocks()
        below, above = locks.enqueue(2, 3), locks.enqueue(10, 12)
        cut = asyncio.ensure_future(locks.claim_from(5))
        await asyncio.sleep(0)
        assert not cut.done()  # the write of stripes 10-12 is under way
        above.release()
        ticket = await asyncio.wait_for(cut, 1)
        assert locks.busy(1 << 40) and not locks.busy(4)
        later, low = locks.enqueue(1 << 40, 1 << 40), locks.enqueue(4, 4)
        await asyncio.wait_for(low.ready(), 1)  # below the cut: goes at once
        waiting = asyncio.ensure_future(later.ready())
        await asyncio.sleep(0)
        assert not waiting.done()
        ticket.release()
        await asyncio.wait_for(waiting, 1)
        for t in (below, later, low):
            t.release()
        assert not locks.busy(1 << 40)

    asyncio.run(run())
