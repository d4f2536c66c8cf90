"""A region's record says whether page patches may exist: set by its writer before the
first patch is staged, so a reader that decodes around nodes with fragments found off
the placement needs no patch-holding node to vouch "none" for a region never paged."""

from __future__ import annotations

import pytest

import ecmem
from ecmem import folding
from ecmem.aio import AsyncClient
from ecmem.meta.model import RegionMeta
from tests.grid.grid import Grid
from tests.grid.test_writer import CHUNK, make_region, stripe


async def test_a_region_is_paged_before_its_first_patch_and_not_before(grid: Grid) -> None:
    c = await grid.client()
    meta = await make_region(c, "r", 2)
    assert not meta.paged
    await c.pwrite("r", 0, stripe(1) + stripe(2))  # whole stripes: no patches
    assert not (await c.region_meta("r")).paged
    await c.pwrite("r", 100, b"a page's worth")  # inside one data fragment: a patch
    meta = await c.region_meta("r")
    assert meta.paged
    parity = grid.nodes[meta.slabs[0][4][0]].store
    assert parity.patches_of(meta.id, 0, None, 0, 1 << 62), "the write went as a patch"
    reader = await grid.client()
    assert await reader.pread("r", 100, 14) == b"a page's worth"


def test_records_from_before_the_flag_count_as_paged() -> None:
    meta = RegionMeta("r", "00000000000000a1", "ec:4+2", 0, CHUNK, 4)
    raw = meta.to_json().replace(b',"paged":true', b"")
    assert b"paged" not in raw and RegionMeta.from_json(raw).paged


async def strays_only(grid: Grid, paged: bool) -> tuple[AsyncClient, RegionMeta, bytes]:
    """A stripe written whole, then slots 3 and 4 handed to new holders that lack it
    (their old holders keep it: strays) and slot 5's node dead; the writer keeps its
    lease. Returns the writer's client, the record and the stripe's bytes."""
    for i in (7, 8):
        await grid.add(f"n{i}")
    c = await grid.client()
    await make_region(c, "r", 1)
    data = stripe(-1)
    await c.pwrite("r", 0, data)

    def move(m: RegionMeta) -> RegionMeta:
        for index, node in ((3, "n7"), (4, "n8")):
            m.hand_off(0, index, (node, grid.nodes[node].info.incarnation), 1 << 62)
        m.paged = paged
        return m

    meta = await c.regions.update("r", move)
    await grid.stop(meta.slabs[0][5][0])
    return c, meta, data


@pytest.mark.parametrize("paged", [False, True])
async def test_strays_and_no_voucher_read_when_never_paged(grid: Grid, paged: bool) -> None:
    """Slots 3 and 4 went to new holders that lack the stripe (their old holders keep
    it: strays), slot 5's node died: fragments 0-3 decode, but no placed node can vouch
    for the stripe's patches. Never paged, that needs no voucher; paged, the read waits
    and reports the stripe unavailable (its patches might be on the dead node)."""
    _, _, data = await strays_only(grid, paged)
    reader = await grid.client()
    reader.read_patience = 1.0
    if paged:
        with pytest.raises(Exception, match="page patches could not be read"):
            await reader.pread("r", 0, 4 * CHUNK)
    else:
        assert await reader.pread("r", 0, 4 * CHUNK) == data


async def test_the_writers_own_record_is_trusted_without_a_fresh_read(grid: Grid) -> None:
    """A writer's fold reads by its own record, without the patience loop: never paged,
    the writer's record proves no patches, so strays alone decode (a catch-up fold that
    waited for a fresh read forever stopped the writer: thrash seed 5)."""
    c, meta, data = await strays_only(grid, False)
    view = folding.writers_view(c.writer_of("r"), meta)
    assert view.synced and not view.paged
    got, _ = await c.io.read_degraded(view, 0)
    assert got == data
    # The writer's plain view (a user read through it) is not trusted without a sync.
    with pytest.raises(ecmem.DataUnavailableError, match="read afresh"):
        await c.io.read_degraded(c.regions.view(meta), 0)
    assert await c.pread("r", 0, len(data)) == data  # the patience loop syncs, then reads
    other = await grid.client()
    with pytest.raises(ecmem.DataUnavailableError, match="read afresh"):
        await other.io.read_degraded(other.regions.view(await other.regions.get("r")), 0)
