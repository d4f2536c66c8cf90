"""Writes of one writer queue per stripe: in order on a shared stripe, at once on others,
and a write that gives up its place never lets a later one past an earlier one."""

from __future__ import annotations

import asyncio

from ecmem.writers import StripeLocks


async def test_queue_order_per_stripe_and_parallel_elsewhere() -> None:
    locks = StripeLocks()
    log: list[str] = []

    async def write(name: str, first: int, last: int, hold: float) -> None:
        ticket = locks.enqueue(first, last)
        await ticket.ready()
        log.append(f"{name}+")
        await asyncio.sleep(hold)
        log.append(f"{name}-")
        ticket.release()

    await asyncio.gather(
        write("a", 0, 1, 0.02), write("b", 1, 1, 0.0), write("c", 5, 5, 0.0), write("d", 0, 0, 0)
    )
    assert log.index("a-") < log.index("b+") and log.index("a-") < log.index("d+")
    assert log.index("c+") < log.index("a-")  # another stripe did not wait


async def test_a_write_that_gives_up_keeps_the_order_behind_it() -> None:
    locks = StripeLocks()
    first = await locks.claim(3, 3)
    quitter = locks.enqueue(3, 3)
    waiting = asyncio.ensure_future(quitter.ready())
    await asyncio.sleep(0)
    later = locks.enqueue(3, 3)
    waiting.cancel()  # the middle write gives up before its turn
    await asyncio.sleep(0.01)
    later_ready = asyncio.ensure_future(later.ready())
    await asyncio.sleep(0.01)
    assert not later_ready.done()  # still behind the first
    first.release()
    await asyncio.wait_for(later_ready, 1)
    later.release()
    assert (await locks.claim(3, 3)) is not None
