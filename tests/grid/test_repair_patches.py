"""Repair of stripes holding page patches, against in-process nodes: the rebuilder
decodes from fragments as encoded (never with patches laid over, which parity does not
have) and gives a rebuilt fragment's node the patches its slot keeps; the scrubber
finds a patched stripe clean. Found by the page-writes chaos scenario (seed 13): a
rebuild while a fold was stuck decoded parity from patched data fragments (a page the
writer never wrote read back as other bytes) and left the new parity node without the
patches (reads missed acknowledged writes)."""

from __future__ import annotations

import asyncio
import os

from coordinator.rebuild import Rebuilder
from ecmem import wire
from ecmem.meta.model import RegionMeta
from ecmem.scrub import Scrubber
from tests.grid.grid import BROKEN, Grid
from tests.grid.test_pagelog import CHUNK, SD, patches_on, region, sent


async def patched_stripe(grid: Grid) -> tuple[RegionMeta, bytearray]:
    """One stripe of ec:4+2 with page patches on data fragments 0 and 1, committed."""
    c = await grid.client()
    meta, model = await region(c, stripes=1)
    for off in (8192, CHUNK + 4096, CHUNK + 12288):
        page = os.urandom(4096)
        await c.pwrite("r", off, page)
        model[off : off + 4096] = page
    await c.commit("r")
    assert sent(grid, meta, wire.Patch) == 9
    await c.release("r")
    return meta, model


async def test_a_stripe_with_patches_its_fold_could_not_take_is_rebuilt_with_them(
    grid: Grid,
) -> None:
    for n in ("n7", "n8"):
        await grid.add(n)  # room for the rebuilt fragments
    meta, model = await patched_stripe(grid)
    placement = [n for n, _ in meta.slabs[0]]
    # Fragment 2 (data) and 4 (parity) lost their nodes: four placed nodes are left, too
    # few for the rebuilder's recovery to fold the patches (it writes at least k+1).
    for i in (2, 4):
        await grid.stop(placement[i])

    def vacate(m: RegionMeta) -> RegionMeta:
        m.slabs[0][2] = ("", "")
        m.slabs[0][4] = ("", "")
        return m

    c = await grid.client()
    await c.regions.update("r", vacate)
    for _ in range(200):  # until the client's watch sees them gone
        if len(c.live_nodes()) == 6:
            break
        await asyncio.sleep(0.01)
    await Rebuilder(await grid.client(), grace=0.0).run_once()
    after = await c.region_meta("r")
    new = {i: after.slabs[0][i][0] for i in (2, 4)}
    assert all(n and n not in placement for n in new.values()), after.slabs[0]
    held = patches_on(grid, after)
    assert not held[new[2]], "a data fragment's node keeps its own fragment's patches only"
    assert len(held[new[4]]) == 3, held  # a parity node keeps every one
    assert await (await grid.client()).pread("r", 0, SD) == model
    # Now only the rebuilt fragments and two others remain: decode through them.
    for i in (0, 5):
        grid.nodes[after.slabs[0][i][0]].set(BROKEN)
    assert await (await grid.client()).pread("r", 0, SD) == model


async def test_a_scrub_finds_a_patched_stripe_clean(grid: Grid) -> None:
    meta, model = await patched_stripe(grid)
    assert any(patches_on(grid, meta).values())
    report = await Scrubber(await grid.client()).run_once(["r"])
    assert not report.findings, report.findings
    assert await (await grid.client()).pread("r", 0, SD) == model


async def test_a_slab_handed_off_past_m_slots_is_rebuilt_with_patches_from_old_holders(
    grid: Grid,
) -> None:
    # Found by the same scenario once the above was fixed: with three slots handed off
    # (their new holders partial: no patch from before), the placed nodes left could
    # not vouch for every patch, and the rebuild retried forever. The old holders are
    # alive off the placement, with the fragments and the patches.
    meta, model = await patched_stripe(grid)
    spares = ["n7", "n8", "n9"]
    for n in spares:
        await grid.add(n)
    c = await grid.client()
    since = max(e[3] for e in grid.nodes[meta.slabs[0][0][0]].store.entries(meta.id)) + 1

    def hand_off(m: RegionMeta) -> RegionMeta:
        for i, spare in zip((1, 4, 5), spares, strict=True):
            m.hand_off(0, i, (spare, grid.nodes[spare].info.incarnation), since)
        return m

    await c.regions.update("r", hand_off)
    await Rebuilder(await grid.client(), grace=0.0).run_once()
    after = await c.region_meta("r")
    assert not after.partial, after.partial
    held = patches_on(grid, after)
    assert len(held[after.slabs[0][1][0]]) == 2 and len(held[after.slabs[0][4][0]]) == 3, held
    for i in (0, 2):  # decode through the rebuilt slots
        grid.nodes[after.slabs[0][i][0]].set(BROKEN)
    assert await (await grid.client()).pread("r", 0, SD) == model
