"""The connection pool: a caller given up on while it opens a connection does not take
the connection away from the callers waiting for the same node."""

from __future__ import annotations

import asyncio

from tests.grid.grid import Grid


async def test_a_cancelled_caller_does_not_cancel_a_shared_connect(grid: Grid) -> None:
    c = await grid.client()
    node = sorted(grid.nodes)[0]
    first = asyncio.ensure_future(c.pool.get(node))
    await asyncio.sleep(0)  # it starts connecting
    second = asyncio.ensure_future(c.pool.get(node))
    await asyncio.sleep(0)
    first.cancel()  # as a degraded read cancels the fetches it no longer needs
    conn = await asyncio.wait_for(second, 5)
    assert not conn.closed
    assert await c.pool.get(node) is conn
