"""What an operator reads while a node is down: a large write logs a few lines that say
where and how often, never one per stripe."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from tests.grid.grid import Grid

MiB = 1 << 20


async def test_a_large_write_with_a_node_down_logs_a_few_lines(
    grid: Grid, caplog: pytest.LogCaptureFixture
) -> None:
    c = await grid.client()
    size = 256 * MiB
    await c.create_region("r", size, "ec:4+2")
    placed = (await c.region_meta("r")).slabs[0]
    await grid.stop(placed[5][0])  # a parity holder of every stripe of slab 0
    for _ in range(300):
        if len(c.live_nodes()) == 5:
            break
        await asyncio.sleep(0.01)
    caplog.set_level(logging.WARNING, logger="ecmem")
    block = os.urandom(64 * MiB)
    for i in range(size // len(block)):
        await c.pwrite("r", i * len(block), block)
    await c.release("r")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(lines) <= 4, "\n".join(lines[:20])
    assert any("written degraded" in line for line in lines), lines
    assert any("more stripes written degraded" in line for line in lines), lines
    meta = await c.region_meta("r")
    assert await c.pread("r", size - MiB, MiB) == block[-MiB:]
    assert meta.size == size
