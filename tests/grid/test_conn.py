"""The connection pool: a caller given up on while it opens a connection does not take
the connection away from the callers waiting for the same node."""

from __future__ import annotations

import asyncio
import logging

import pytest

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


def test_a_slow_node_is_logged_once_a_spell_not_once_a_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ecmem.conn import ConnectionPool

    pool = ConnectionPool(lambda node: None)  # type: ignore[arg-type,return-value]
    with caplog.at_level(logging.WARNING, logger="ecmem.conn"):
        for _ in range(50):  # a paused node: every small read that meets it says so
            pool.suspect("node-1")
        pool.suspect("node-2")
    assert pool.is_suspect("node-1") and pool.is_suspect("node-2")
    slow = [r.getMessage() for r in caplog.records if "slow to answer" in r.getMessage()]
    assert len(slow) == 2 and "node-1" in slow[0] and "node-2" in slow[1]


async def test_a_node_that_refuses_connections_is_gone_around() -> None:
    import socket

    from ecmem.conn import ConnectionPool
    from ecmem.errors import NodeUnavailable

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = ConnectionPool(lambda node: f"127.0.0.1:{port}")  # type: ignore[arg-type,return-value]
    assert not pool.is_suspect("node-3")
    with pytest.raises(NodeUnavailable):
        await pool.get("node-3")  # its process is gone; ZooKeeper still lists it a while
    assert pool.is_suspect("node-3")  # so no handoff goes to it meanwhile
