"""Fragments erased from every holder: a read of the written bytes fails and says what
is lost; it never answers zeros for them (a hole is only what was never written)."""

from __future__ import annotations

import os

import pytest

import ecmem
from tests.grid.grid import Grid


@pytest.mark.parametrize("policy", ["ec:4+2", "rep:3"])
async def test_erased_on_every_holder_raises_never_zeros(grid: Grid, policy: str) -> None:
    c = await grid.client()
    await c.create_region("e", 0, policy)
    data = os.urandom(256 << 10)
    await c.pwrite("e", 0, data)
    await c.release("e")
    meta = await c.region_meta("e")
    for node in grid.nodes.values():
        node.store.delete(meta.id)  # what a Delete from anyone does on each holder
    r = await grid.client()
    for offset, length in ((0, 4096), (100, 10), (0, len(data))):
        with pytest.raises((ecmem.DataLostError, ecmem.DataUnavailableError)):
            await r.pread("e", offset, length)
