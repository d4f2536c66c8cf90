"""The rebuilder against in-process nodes: a stripe recorded lost stays lost until it
is stored back on every holder, not only on the slot a pass rebuilt."""

from __future__ import annotations

from crc32c import crc32c

from coordinator.rebuild import Rebuilder
from ecmem.meta.model import RegionMeta
from tests.grid.grid import Grid
from tests.grid.test_writer import CHUNK, E1, fragments, make_region, stripe


async def test_a_lost_stripe_found_again_is_stored_on_every_holder(grid: Grid) -> None:
    for i in range(7, 12):
        await grid.add(f"n{i}")
    c = await grid.client()
    meta = await make_region(c, "r", 1)
    sd = 4 * CHUNK
    old, new = stripe(1), stripe(2)
    # Every holder has an old version; the newest write's fragments 0-3 lie on four
    # nodes off the placement (they held them, then left it); fragment 5 went vacant.
    for i, frag in enumerate(fragments(meta, old)):
        node = grid.nodes[meta.slabs[0][i][0]]
        node.store.repair(meta.id, 0, i, E1 + 1, len(frag), crc32c(frag), frag, (0, 0, sd), 0)
    placed = {n for n, _ in meta.slabs[0]}
    strays = [n for n in grid.nodes if n not in placed][:4]
    for i, frag in enumerate(fragments(meta, new)[:4]):
        store = grid.nodes[strays[i]].store
        store.repair(meta.id, 0, i, E1 + 2, len(frag), crc32c(frag), frag, (0, 0, sd), 0)

    def lost(m: RegionMeta) -> RegionMeta:
        m.epoch = 1
        m.slabs[0][5] = ("", "")
        m.lost = [(0, 1)]  # a pass found it lost while the strays were away
        return m

    await c.regions.update("r", lost)
    rebuilder = Rebuilder(await grid.client(), grace=0.0)
    await rebuilder.run_once()
    after = await c.region_meta("r")
    assert after.slabs[0][5][0] and not after.lost
    reader = await grid.client()
    assert await reader.pread("r", 0, sd) == new
    for i, (n, _) in enumerate(after.slabs[0]):
        versions = [e[3] for e in grid.nodes[n].store.entries(meta.id) if e[2] == i]
        assert versions == [E1 + 2], (n, i, versions)
