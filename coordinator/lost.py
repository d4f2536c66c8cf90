"""Stripes recorded lost: reported when found, looked for again on every pass.

A written stripe with fewer than k fragments of its newest version on any live node
is lost (never rebuilt from nothing, never read as zeros); the rebuilder records it
in the region's record (REGION_DATA_LOST). Each pass it looks again on every live
node: a node may have come back with them. Those found whole are stored back on
their holders and leave the record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ecmem import extents
from ecmem.aio import AsyncClient
from ecmem.errors import EcmemError, Fenced, RegionNotFound
from ecmem.layout import Layout
from ecmem.logs import where
from ecmem.meta.model import RegionMeta
from ecmem.repair import Strays, committed_versions
from ecmem.stripes import RegionView
from ecmem.writers import Writer

from .progress import Progress
from .survey import Facets


class LostStripes:
    """The rebuilder's part that deals with lost stripes (mixed into Rebuilder)."""

    client: AsyncClient
    log: logging.Logger
    progress: Progress
    stopping: bool
    _metas: dict[str, RegionMeta]
    facets: Facets

    async def _zk(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def _lease(self, region: str, held: dict[str, float]) -> bool:
        raise NotImplementedError

    async def _stripe(
        self,
        meta: RegionMeta,
        view: RegionView,
        stripe: int,
        entry: tuple[int, tuple[int, int, int], set[int]],
        targets: dict[int, tuple[str, str]],
        lease: Writer,
        strays: dict[int, str],
    ) -> bool:
        raise NotImplementedError

    async def retry_lost(self, held: dict[str, float]) -> None:
        """Look again for the stripes recorded lost: a node may have come back with them.
        Those found whole again (k fragments of their newest version anywhere) are stored
        back on their holders and no longer lost."""
        lost = [self._metas[n] for n in sorted(self.facets.lost) if n in self._metas]
        for meta in lost:
            if not meta.lost or self.stopping:
                continue
            try:
                if not await self._lease(meta.name, held):
                    continue
                meta = await self.client.region_meta(meta.name)
                lease = self.client.writer_of(meta.name)
                found = await self._find_lost(meta, lease)
                if found:
                    await self._zk(
                        self.client.meta.update_region, meta.name, _unlost(lease.epoch, found)
                    )
            except RegionNotFound:
                continue
            except EcmemError as exc:
                if isinstance(exc, Fenced):
                    held.pop(meta.name, None)
                self.log.warning(
                    "region %s: looking for its lost stripes failed, will retry: %s",
                    meta.name,
                    exc,
                    extra=where(meta.name),
                )
                continue
            if found:
                self.log.warning(
                    "region %s: stripes %s, recorded lost, were found again and are whole",
                    meta.name,
                    extents.describe(found),
                    extra=where(meta.name),
                )

    async def _find_lost(self, meta: RegionMeta, lease: Writer) -> extents.Ranges:
        view = self.client.make_view(meta)
        found: list[int] = []
        for slab in sorted({s // meta.slab_stripes for s in extents.stripes(meta.lost)}):
            first = slab * meta.slab_stripes
            want = set(extents.stripes(extents.within(meta.lost, first, first + meta.slab_stripes)))
            strays: Strays = {}
            stripes = await committed_versions(self.client, meta, view, slab, set(), strays)
            live = self.client.live_nodes()
            targets = {i: h for i, h in enumerate(meta.slabs[slab]) if h[0] in live}
            for stripe in sorted(want & set(stripes)):
                if await self._stripe(
                    meta, view, stripe, stripes[stripe], targets, lease, strays.get(stripe, {})
                ):
                    found.append(stripe)
        return extents.of(found)

    def _report_lost(self, meta: RegionMeta, slab: int, lost: list[int]) -> None:
        ranges = extents.of(lost)
        msg = (
            f"region {meta.name} slab {slab}: stripes {extents.describe(ranges)} have fewer "
            f"than {Layout.of(meta.policy, meta.chunk, meta.slab_stripes).policy.k} fragments "
            "of their newest version left on any node: lost"
        )
        self.progress.unrecoverable.append(msg)
        self.log.error(
            "%s; recorded (REGION_DATA_LOST). Bring back nodes that may hold them, restore "
            "the region from a copy, or accept the loss with 'ecmem region mark-lost-ok %s'",
            msg,
            meta.name,
            extra=where(meta.name, slab),
        )


def _unlost(epoch: int, found: extents.Ranges) -> Callable[[RegionMeta], RegionMeta | None]:
    def change(m: RegionMeta) -> RegionMeta | None:
        if m.epoch != epoch:
            raise Fenced(f"region {m.name}: a writer took over while it was repaired")
        lost = extents.minus(m.lost, found)
        if lost == m.lost:
            return None
        m.lost = lost
        return m

    return change
