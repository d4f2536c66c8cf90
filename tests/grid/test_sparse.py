"""Sparse regions against in-process nodes: a slab is placed when first written, so a
region's record and its nodes' memory follow the bytes written, not its size."""

from __future__ import annotations

import asyncio
import os

import pytest

import ecmem
from ecmem.layout import Layout
from ecmem.members import EAGER_SLABS
from ecmem.meta.model import RegionMeta
from storage_node.registration import Registration
from tests.grid.grid import Grid

PiB, TiB, GiB = 1 << 50, 1 << 40, 1 << 30


def layout(meta: RegionMeta) -> Layout:
    return Layout.of(meta.policy, meta.chunk, meta.slab_stripes)


def used(grid: Grid) -> int:
    return sum(n.store.used for n in grid.nodes.values())


async def test_a_page_written_at_one_pebibyte_takes_one_slab_and_a_small_record(
    grid: Grid,
) -> None:
    c = await grid.client()
    await c.create_region("s", 0, "ec:4+2")
    page = os.urandom(4096)
    before = used(grid)
    await c.pwrite("s", PiB, page)
    await c.release("s")
    meta = await c.region_meta("s")
    assert meta.size == PiB + 4096
    assert list(meta.slabs) == [layout(meta).slab_of(PiB // layout(meta).stripe_data)]
    assert len(meta.to_json()) < 4096, len(meta.to_json())
    # Six fragments of one stripe holding 4 KiB, not a slab's worth of anything.
    assert used(grid) - before < 6 * (layout(meta).fragment_size + 4096)
    r = await grid.client()
    assert await r.pread("s", PiB, 4096) == page
    for hole in (0, 4096, TiB, PiB - 8192):
        assert await r.pread("s", hole, 8192) == bytes(8192), hole
    assert await r.pread("s", PiB - 10, 20) == bytes(10) + page[:10]


async def test_growing_places_nothing_and_writes_place_only_their_slabs(grid: Grid) -> None:
    c = await grid.client()
    await c.create_region("g", 100, "ec:4+2")
    await c.pwrite("g", 0, b"a" * 100)
    meta = await c.region_meta("g")
    assert list(meta.slabs) == [0]
    await c.truncate("g", 2 * TiB)
    assert list((await c.region_meta("g")).slabs) == [0]
    slab = layout(meta).slab_size
    data = os.urandom(3 * 4096)
    at = 700 * slab - 4096  # across the boundary of slabs 699 and 700
    await c.pwrite("g", at, data)
    meta = await c.region_meta("g")
    assert sorted(meta.slabs) == [0, 699, 700]
    assert await c.pread("g", 0, 200) == b"a" * 100 + bytes(100)
    assert await c.pread("g", at - 5, len(data) + 10) == bytes(5) + data + bytes(5)
    # Cut back below the written slabs and grown again: they read as zeros.
    await c.truncate("g", 50)
    await c.truncate("g", TiB)
    assert await c.pread("g", at, len(data)) == bytes(len(data))
    assert await c.pread("g", 0, 100) == b"a" * 50 + bytes(50)


async def test_a_region_larger_than_the_cluster_is_created_unplaced(grid: Grid) -> None:
    c = await grid.client()
    # The grid's nodes hold 1 GiB each: a 10 TiB region could never be placed whole.
    await c.create_region("big", 10 * TiB, "rep:3")
    meta = await c.region_meta("big")
    assert meta.slabs == {} and layout(meta).slabs_for(meta.size) > EAGER_SLABS
    assert await c.pread("big", 5 * TiB, 4096) == bytes(4096)
    await c.pwrite("big", 5 * TiB, b"z" * 4096)
    assert await c.pread("big", 5 * TiB, 4096) == b"z" * 4096
    assert len((await c.region_meta("big")).slabs) == 1
    # A small region is still placed at creation: a full cluster says so at once.
    await c.create_region("small", 8 * layout(meta).slab_size, "rep:3")
    assert len((await c.region_meta("small")).slabs) == 8


async def test_a_write_where_no_node_has_room_fails_clearly_and_loses_nothing(
    grid: Grid,
) -> None:
    c = await grid.client()
    await c.create_region("f", 0, "ec:4+2")
    await c.pwrite("f", 0, b"kept")
    for node in grid.nodes.values():  # full, as their records say
        reg = Registration(grid._zk, grid.cluster, node.info)
        await asyncio.to_thread(reg.refresh, node.info.capacity)
    with pytest.raises(ecmem.ClusterFullError, match="free space|start more nodes"):
        await c.pwrite("f", 100 * GiB, b"x" * 4096)
    assert await c.pread("f", 0, 4) == b"kept"


async def test_cutting_a_pebibyte_region_short_is_quick(grid: Grid) -> None:
    """A truncation waits for writes of the stripes it cuts: by range, not stripe by
    stripe (2**38 of them here)."""
    c = await grid.client()
    await c.create_region("cut", 0, "ec:4+2")
    await c.pwrite("cut", 0, b"head")
    await c.pwrite("cut", PiB, b"tail")
    await asyncio.wait_for(c.truncate("cut", 2), timeout=30)
    assert (await c.region_meta("cut")).size == 2
    await c.truncate("cut", PiB + 4)
    assert await c.pread("cut", 0, 4) == b"he\0\0"
    assert await c.pread("cut", PiB, 4) == bytes(4)


async def test_an_overwrite_that_finds_no_room_fails_alone(grid: Grid) -> None:
    """Within the size but in an unplaced slab, with every node full: the call fails,
    the writer does not (it took no version)."""
    c = await grid.client()
    await c.create_region("o", 0, "ec:4+2")
    await c.pwrite("o", 0, b"kept")
    await c.truncate("o", TiB)
    regs = [Registration(grid._zk, grid.cluster, n.info) for n in grid.nodes.values()]
    for reg in regs:
        await asyncio.to_thread(reg.refresh, reg.info.capacity)
    with pytest.raises(ecmem.ClusterFullError):
        await c.pwrite("o", TiB // 2, b"x" * 4096)
    for reg in regs:
        await asyncio.to_thread(reg.refresh, 0)
    await c.pwrite("o", 4, b"more")  # not Fenced: the same writer goes on
    await c.pwrite("o", TiB // 2, b"y" * 4096)
    assert await c.pread("o", 0, 8) == b"keptmore"
    assert await c.pread("o", TiB // 2, 4096) == b"y" * 4096


async def test_a_reader_whose_record_is_late_reads_a_new_slab_not_zeros(grid: Grid) -> None:
    writer, reader = await grid.client(), await grid.client()
    await writer.create_region("late", 0, "ec:4+2")
    await writer.truncate("late", TiB)
    old = await reader.region_meta("late")
    data = os.urandom(8192)
    await writer.pwrite("late", TiB // 4, data)
    reader.regions._regions["late"] = (old, 0)  # as if its watch had not fired yet
    assert not (await reader.regions.get("late")).slabs
    assert await reader.pread("late", TiB // 4, 8192) == data
