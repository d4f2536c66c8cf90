"""A writer's size changes: growing a region, cutting it short, and accepting the loss
of stripes no node can supply any more (docs/protocol.md, "Written stripes")."""

from __future__ import annotations

import logging
import time

from . import extents, wire
from .layout import Layout
from .meta.model import RegionMeta
from .writer import WriterSession

log = logging.getLogger(__name__)


async def resize(self: WriterSession, meta: RegionMeta, size: int) -> None:
    """Grow (the new bytes read as zeros) or cut the region to ``size`` bytes."""
    layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
    sd = layout.stripe_data
    if size > meta.size:
        # Bytes past the old end may hold leftovers of an earlier, longer life (not in
        # an unplaced slab: nothing was ever written there). Growing places nothing.
        tail_end = min(size, -(-meta.size // sd) * sd)
        if tail_end > meta.size and layout.slab_of(meta.size // sd) in meta.slabs:
            await self.write_at(meta.size, bytes(tail_end - meta.size), meta.size)
        await self.publish_size(size, exact=True)
        await self.commit()
        return
    if size == meta.size:
        return
    # Overwrites claimed stripes under the region's lock and may not have begun yet:
    # wait for those of the stripes being cut, and keep new ones out, until it is done.
    ticket = await self.stripes.claim_from(size // sd)
    try:
        await _shrink(self, layout, size)
    finally:
        ticket.release()


async def _shrink(self: WriterSession, layout: Layout, size: int) -> None:
    # Writes before the truncation are committed first, so that no recovery can
    # bring back what it cut off.
    await self.commit()
    first_gone = layout.stripes_for(size)
    floor = self.upcoming()

    def shrink(m: RegionMeta) -> RegionMeta:
        self.check_epoch(m)
        m.size = size
        m.mtime = time.time()
        m.floors = [(s, v) for s, v in m.floors if s < first_gone] + [(first_gone, floor)]
        m.written = extents.remove(m.written, first_gone, 1 << 62)
        m.lost = extents.remove(m.lost, first_gone, 1 << 62)
        m.pending = [(f, min(e, first_gone), v) for f, e, v in m.pending if f < first_gone]
        return m

    new = await self.host.regions.update(self.name, shrink)
    self.size_published(size, exact=True)
    self.patched.forget(first_gone)
    self.marked = extents.remove(self.marked, first_gone, 1 << 62)
    unreached = await self.host.io.delete(self.host.regions.view(new), first_gone, self.epoch)
    if unreached:
        log.info(
            "region %s truncated; nodes %s keep stale stripes past the end, which read as unset",
            self.name,
            ", ".join(unreached),
        )


async def accept_loss(self: WriterSession) -> extents.Ranges:
    """Accept that the region's lost stripes are gone for good (as an operator's
    mark-lost-ok): what is left of them is deleted and they read as zeros from now
    on. Returns the stripes accepted."""
    meta: RegionMeta = await self.host.regions.get(self.name, fresh=True)
    if not meta.lost:
        return []
    accepted: extents.Ranges = meta.lost
    nodes = [n for slab in meta.slabs.values() for n, _ in slab if n]
    nodes += list(self.host.live_nodes())
    older = self.epoch << wire.SEQ_BITS  # never a write of this session
    for first, end in accepted:
        await self.host.io.broadcast(nodes, wire.Delete(meta.id, first, self.epoch, end, older))
        self.patched.forget(first, end)

    def accept(m: RegionMeta) -> RegionMeta:
        self.check_epoch(m)
        still = extents.intersect(accepted, m.lost)  # not rewritten meanwhile
        m.written = extents.minus(m.written, still)
        m.lost = extents.minus(m.lost, still)
        return m

    new = await self.host.regions.update(self.name, accept)
    self.marked = extents.minus(new.written, new.lost)
    log.warning(
        "region %s: the loss of stripes %s was accepted; they read as zeros",
        self.name,
        extents.describe(accepted),
    )
    return accepted
