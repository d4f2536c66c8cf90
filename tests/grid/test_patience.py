"""A read that finds a stripe short of fragments waits for it, within its patience."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

import ecmem
from ecmem import wire
from tests.grid.grid import BROKEN, Grid

CHUNK = 4096


async def test_a_read_waits_out_nodes_that_come_back_within_its_patience(grid: Grid) -> None:
    writer = await grid.client()
    await writer.create_region("r", 4 * CHUNK, "ec:4+2", chunk=CHUNK)
    data = os.urandom(4 * CHUNK)
    await writer.pwrite("r", 0, data)
    meta = await writer.region_meta("r")
    await writer.release("r")
    out = grid.holders(meta)[:3]  # one more than ec:4+2 survives
    for node in out:
        node.set(BROKEN)
    reader = await grid.client()
    reader.read_patience = 0
    with pytest.raises(ecmem.DataUnavailableError) as err:
        await reader.pread("r", 0, len(data))
    assert "waiting" not in str(err.value)

    reader.read_patience = 5.0
    t = time.monotonic()
    read = asyncio.ensure_future(reader.pread("r", 0, len(data)))
    await asyncio.sleep(0.4)
    assert not read.done(), "the read gave up before its patience was spent"
    out[0].heal()  # back within the patience: the read succeeds
    assert await read == data
    assert time.monotonic() - t >= 0.4

    out[0].set(BROKEN)
    reader.read_patience = 0.3
    with pytest.raises(ecmem.DataUnavailableError) as err:
        await reader.pread("r", 0, len(data))
    assert "still so after 0." in str(err.value)


async def test_a_write_short_of_nodes_waits_for_one_to_come_back(grid: Grid) -> None:
    """Two of six holders fail and no spare exists: 4 fragments staged, 5 needed. The
    write waits; a node back within its patience takes a vacant slot and it succeeds."""
    c = await grid.client()
    await c.create_region("r", 4 * CHUNK, "ec:4+2", chunk=CHUNK)
    await c.pwrite("r", 0, os.urandom(4 * CHUNK))
    meta = await c.region_meta("r")
    out = grid.holders(meta)[:2]
    for node in out:
        node.set(BROKEN, wire.Put)
    data = os.urandom(4 * CHUNK)
    write = asyncio.ensure_future(c.pwrite("r", 0, data))
    await asyncio.sleep(0.6)
    assert not write.done(), "the write gave up with two nodes out"
    out[0].heal()
    assert await write == len(data)
    reader = await grid.client()
    assert await reader.pread("r", 0, len(data)) == data
