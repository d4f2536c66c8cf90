"""Copies nobody needs any more, and their deletion: a slab's old holders after a
rebuild moved it (after a delay, so that readers have moved on), what a node that
rejoins still holds of slabs it no longer holds, and files a mount unlinked while
they were open. Copies of a slab with lost stripes are kept: they may be all that
is left of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from ecmem import extents, wire
from ecmem.aio import AsyncClient
from ecmem.errors import EcmemError, ProtocolError, RegionNotFound
from ecmem.logs import where
from ecmem.meta.model import NodeInfo, RegionMeta
from ecmem.meta.records import Records
from ecmem.repair import REPAIR_TIMEOUT

log = logging.getLogger(__name__)

GARBAGE_DELAY = 5.0  # seconds before an old holder's copies are deleted
# Seconds a mount has to take the lease of a file it moved to the trash (tests shorten it).
TRASH_DELAY = float(os.environ.get("ECMEM_TRASH_DELAY", "10"))


class Collector:
    def __init__(
        self,
        client: AsyncClient,
        records: Records,
        clock: Callable[[], float] = time.time,
        log_: logging.Logger = log,
    ) -> None:
        self.client = client
        self.records = records
        self.clock = clock
        self.log = log_
        self._swept: set[str] = set()  # live nodes checked for orphans since they joined

    async def _zk(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def sweep_new(self, live: set[str], metas: dict[str, RegionMeta]) -> None:
        """Sweep each node that joined (or rejoined) since the last call; ``metas``:
        every region's record, as the pass knows them."""
        for node in sorted(live - self._swept):
            await self.sweep(node, metas)
        self._swept = set(live)

    async def sweep(self, node: str, regions: dict[str, RegionMeta]) -> int:
        """Delete what a (re)joined node holds of slabs it no longer holds: copies left from
        before a rebuild moved them. Only versions of epochs older than the region's
        current one go, so a write racing this sweep is never touched."""
        try:
            _, reply = await self.client.pool.request(node, wire.List("", 0), REPAIR_TIMEOUT)
        except EcmemError as exc:
            self.log.info(
                "could not sweep node %s for stale fragments: %s", node, exc, extra=where(node=node)
            )
            self._swept.discard(node)
            return 0
        if not isinstance(reply, wire.Listing):
            return 0
        known = {m.id: m for m in regions.values()}
        live = self.client.live_nodes()
        stale = _stale(reply.entries, known, node, live)
        # The pass's records may be a moment old: the regions concerned are read again.
        fresh: dict[str, RegionMeta] = {}
        for rid in sorted({rid for rid, _ in stale}):
            try:
                fresh[rid] = (await self._zk(self.client.meta.get_region, known[rid].name))[0]
            except (RegionNotFound, ProtocolError):  # gone, or damaged: left alone
                continue
        metas = {rid: m for rid, m in fresh.items() if m.id == rid}
        entries = [e for e in reply.entries if e[0] in metas]
        stale = _stale(entries, metas, node, live)
        for rid, slab in sorted(stale):
            meta = metas[rid]
            first = slab * meta.slab_stripes
            upto = (meta.epoch << wire.SEQ_BITS) - 1
            msg = wire.Delete(rid, first, 0, first + meta.slab_stripes, upto)
            try:
                await self.client.pool.request(node, msg, REPAIR_TIMEOUT)
            except EcmemError:
                continue
        if stale:
            self.log.info(
                "node %s rejoined holding %d slabs it no longer owns; their stale copies are "
                "deleted",
                node,
                len(stale),
                extra=where(node=node),
            )
        return len(stale)

    # -- garbage ----------------------------------------------------------------------

    async def collect_trash(self, metas: dict[str, RegionMeta], names: list[str]) -> int:
        """Delete files a mount unlinked (or renamed over) while it had them open, once
        no mount holds them: a mount keeps the lease of such a file until its last
        close, and loses it with its ZooKeeper session if it dies."""
        done = 0
        for name in names:
            meta = metas.get(name)
            if meta is None or self.clock() - meta.ctime < TRASH_DELAY:
                continue
            lease = await self._zk(self.client.meta.zk.exists, self.client.meta.paths.lease(name))
            if lease is not None and lease.ephemeralOwner:  # one no session holds is none
                continue
            try:
                await self.client.delete_region(name)
            except RegionNotFound:
                continue
            done += 1
            self.log.info("deleted %s: unlinked on a mount that no longer has it open", name)
        return done

    async def collect_garbage(self) -> int:
        """Delete slabs' copies on nodes they moved away from; returns how many were done."""
        entries = await self._zk(self.records.garbage)
        if not entries:
            return 0
        live = await self._zk(self.client.meta.live_nodes)
        registered = await self._zk(self.client.meta.registered_nodes)
        done = 0
        for name, g in sorted(entries.items()):
            node = str(g.get("node", ""))
            if node not in registered and node not in live:
                await self._zk(self.records.done_garbage, name)
                continue
            if node not in live or float(g.get("after", 0)) > self.clock():
                continue
            try:
                meta = await self.client.region_meta(str(g["region"]))
            except RegionNotFound:
                meta = None
            if meta is not None and meta.id == g["region_id"]:
                slab = int(g["from"]) // meta.slab_stripes
                if slab in meta.slabs and any(n == node for n, _ in meta.slabs[slab]):
                    await self._zk(self.records.done_garbage, name)  # it holds the slab again
                    continue
                if slab in meta.slabs and not whole(meta, slab, live):
                    continue  # kept while the slab is not whole: they may be all there is
            msg = wire.Delete(
                str(g["region_id"]), int(g["from"]), 0, int(g["until"]), int(g["upto"])
            )
            try:
                _, reply = await self.client.pool.request(node, msg, REPAIR_TIMEOUT)
            except EcmemError as exc:
                self.log.info(
                    "garbage on node %s kept for now: %s", node, exc, extra=where(node=node)
                )
                continue
            if isinstance(reply, wire.Ok):
                await self._zk(self.records.done_garbage, name)
                done += 1
        return done


def has_lost(meta: RegionMeta, slab: int) -> bool:
    first = slab * meta.slab_stripes
    return bool(extents.within(meta.lost, first, first + meta.slab_stripes))


def whole(meta: RegionMeta, slab: int, live: Mapping[str, NodeInfo]) -> bool:
    """Does every slot of the slab have a live holder with all of its stripes, and no
    stripe of it stand lost? Until then, a copy off its placement (a holder that missed
    a commit and left, with its committed fragments) may be what a rebuild needs."""
    partial = set(meta.partial)
    return not has_lost(meta, slab) and all(
        node in live and live[node].incarnation == inc and (slab, i) not in partial
        for i, (node, inc) in enumerate(meta.slabs[slab])
    )


def _stale(
    entries: list[Any], metas: dict[str, RegionMeta], node: str, live: dict[str, NodeInfo]
) -> set[tuple[str, int]]:
    """(region id, slab) a node's listing holds that the slab no longer places on it."""
    stale: set[tuple[str, int]] = set()
    for rid, stripe, *_ in entries:
        meta = metas.get(rid)
        if meta is None:
            continue  # a region removed: its own removal (or scrub) deals with it
        slab = int(stripe) // meta.slab_stripes
        if slab not in meta.slabs or all(n != node for n, _ in meta.slabs[slab]):
            if slab not in meta.slabs or whole(meta, slab, live):
                stale.add((rid, slab))  # else what it holds may be all that is left
    return stale
