"""Handing a failed node's fragment slot to another node, for a writer session.

A write whose node failed gives that slot to a handoff node (ZooKeeper records it as
partial: the new holder lacks the slab's older stripes) or leaves it vacant if none
qualifies. A vacant slot is looked at again at most once a second, not once a stripe,
and both conditions are logged once a minute per region, then counted (with
the slabs).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from . import wire
from .logs import Tally, where
from .members import handoff_holder
from .meta.model import Placement, RegionMeta
from .stripes import RegionView
from .writers import State

log = logging.getLogger(__name__)
PLACED = Tally(log)
VACANT_RETRY = 1.0  # seconds between looks for a holder of a vacant slot
# A node that missed a commit round is not given a slot again for this long: one that
# keeps missing them would otherwise be handed slots, caught up and vacated over and over.
COOL_DOWN = 3.0


class Session(Protocol):
    """What a handoff needs of a writer session (``WriterSession`` is one)."""

    name: str
    epoch: int
    told: int
    state: State
    host: Any
    placing: asyncio.Lock
    vacant_tried: dict[tuple[int, int], float]
    left: dict[str, float]

    async def fence(self, meta: RegionMeta, slabs: dict[int, Placement]) -> int: ...

    def unfit_holders(self, slab: int, slab_stripes: int) -> set[str]: ...

    def check_epoch(self, m: RegionMeta) -> None: ...


async def replace(w: Session, view: RegionView, stripe: int, index: int, why: str) -> bool:
    """Give a fragment whose holder failed a write to a handoff node (or leave the slot
    vacant if none qualifies); updates ZooKeeper, then ``view``. True if the slot has a
    holder to write to now."""
    if w.state is not State.WRITING:
        return False  # released or stopped: no placement changes without the lease
    slab = view.layout.slab_of(stripe)
    failed = view.slabs[slab][index][0]
    now = time.monotonic()
    if not failed and w.vacant_tried.get((slab, index), -VACANT_RETRY) > now - VACANT_RETRY:
        return False  # looked for a holder a moment ago: no ZooKeeper round per stripe
    async with w.placing:
        meta = await w.host.regions.get(w.name)
        current = meta.slabs[slab][index]
        changed = False
        if current[0] == failed:
            unfit = unfit_for(w, slab, meta.slab_stripes, now)
            meta = await w.host.call(hand_off, w, meta, slab, index, failed, unfit)
            current = meta.slabs[slab][index]
            changed = current[0] != failed
            if current[0]:
                w.host.pool.metrics.handoffs.inc()
                await w.fence(meta, {slab: meta.slabs[slab]})
            else:
                w.vacant_tried[(slab, index)] = now
        if changed:  # a vacant slot still without a holder is no news
            PLACED.warn(
                f"region {w.name}",
                "fragment handoffs",
                slab,
                "region %s slab %d fragment %d: %s (%s); %s",
                w.name,
                slab,
                index,
                f"node {failed} failed" if failed else "a vacant slot",
                why,
                f"handed off to {current[0]}" if current[0] else "no handoff node, left vacant",
                extra=where(w.name, slab, index, failed or None),
            )
        view.slabs[slab][index] = current
        view.partial = meta.partial_slots()
        return bool(current[0])


def unfit_for(w: Session, slab: int, slab_stripes: int, now: float) -> set[str]:
    """Nodes not to give a slot of ``slab`` now (on the event loop: reads the writer's
    state): those that may hold a copy of the slab above every commit point sent, and
    those that left a slot a moment ago."""
    recent = {n for n, at in w.left.items() if now - at < COOL_DOWN}
    return w.unfit_holders(slab, slab_stripes) | recent


def hand_off(
    w: Session, meta: RegionMeta, slab: int, index: int, failed: str, unfit: set[str]
) -> RegionMeta:
    """The ZooKeeper update (blocking): the slot to a handoff holder, or vacant."""
    host = w.host
    live, draining = host.meta.live_nodes(), set(host.meta.draining())
    holder = handoff_holder(live, draining | unfit, host.pool.is_suspect, meta, slab, failed)
    # The new holder may have held this slot before and missed writes since: it holds
    # no copy of the slab above a commit point sent (``unfit`` leaves out any that might),
    # so all its copies are at or below ``told``, and every write it gets from here on
    # is newer (not yet staged everywhere, so not yet committed).
    since = max(w.told, w.epoch << wire.SEQ_BITS) + 1

    def change(m: RegionMeta) -> RegionMeta | None:
        w.check_epoch(m)
        if m.slabs[slab][index][0] != failed or not (failed or holder[0]):
            return None
        m.hand_off(slab, index, holder, since)
        return m

    new: RegionMeta = host.regions.update_now(meta.name, change)
    return new
