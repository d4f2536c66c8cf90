"""What the rebuilder finds at the start and end of a pass (mixed into Rebuilder): the
damage, from the region index's changes, not a read of every record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ecmem.aio import AsyncClient
from ecmem.damage import Damage, DamageTally, Slot, find_damage
from ecmem.meta.model import NodeInfo, RegionMeta
from ecmem.meta.records import Records

from .index import RegionIndex


class Survey:
    client: AsyncClient
    records: Records
    index: RegionIndex | None
    tally: DamageTally
    clock: Callable[[], float]
    grace: float
    _metas: dict[str, RegionMeta]
    # What the last survey read of ZooKeeper, reused for each slab of the pass.
    _live: dict[str, NodeInfo]
    _since: dict[str, float]
    _forced: set[str]
    _drains: set[str]

    def survey(self) -> tuple[Damage, dict[str, NodeInfo], dict[str, dict[str, Any]]]:
        """Damage now, the live nodes, and the operator's open requests."""
        store = self.client.meta
        registered = set(store.registered_nodes())
        live = store.live_nodes()
        since = self.records.track_down(registered, set(live), self.clock())
        requests = self.records.requests()
        forced = {str(r["node"]) for r in requests.values() if r.get("node")}
        if "*" in forced:  # an operator asked to rebuild every down node now
            forced |= registered - set(live)
        if self.index is None:
            metas = {m.name: m for m in store.regions()}
            changed = set(metas) | set(self._metas)
        else:
            changed = self.index.take_changes("rebuilder")
            metas = self.index.snapshot() if changed or not self._metas else self._metas
        self._metas = metas
        self._live, self._since, self._forced = live, since, forced
        self._drains = set(self.records.drains())
        damage = self.tally.update(
            metas, changed, live, since, self.clock(), self.grace, self._drains, forced
        )
        return damage, live, requests

    def _recheck(self, meta: RegionMeta, slab: int) -> tuple[list[Slot], dict[str, NodeInfo]]:
        """The slab's damage by its current record, with the pass's view of the nodes
        (membership kept current by the client's watch): no full survey per slab."""
        live = {n: self._live.get(n, info) for n, info in self.client.live_nodes().items()}
        damage = find_damage(
            [meta], live, self._since, self.clock(), self.grace, self._drains, self._forced
        )
        return [s for s in damage.slots if s.slab == slab], live

    async def _close_requests(self, requests: dict[str, dict[str, Any]]) -> None:
        """A request for one node stands until the node holds nothing (or is back);
        others were served by this pass."""
        live = await asyncio.to_thread(self.client.meta.live_nodes)
        holding = {n for m in self._metas.values() for slab in m.slabs for n, _ in slab}
        for name, req in requests.items():
            node = str(req.get("node", ""))
            if node in live and float(req.get("listed_until", 0)) > time.time():
                continue  # dead already, listed until its session expires
            if node in ("", "*") or node in live or node not in holding:
                await asyncio.to_thread(self.records.done_request, name)
