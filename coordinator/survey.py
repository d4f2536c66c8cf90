"""What the rebuilder finds at the start and end of a pass (mixed into Rebuilder): the
damage, from the region index's changes, not a read of every record."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from ecmem.aio import AsyncClient
from ecmem.damage import Damage, DamageTally, Slot, find_damage
from ecmem.health import holders
from ecmem.meta.catalog import TRASH
from ecmem.meta.model import NodeInfo, RegionMeta
from ecmem.meta.records import Records

from .index import RegionIndex
from .progress import Progress


@dataclass
class Facets:
    """What a pass looks for among all regions, kept from the index's changes rather
    than looked for in every record each pass: the mount's trash, the regions with
    stripes recorded lost, and the nodes holding some fragment."""

    trash: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    holds: dict[str, frozenset[str]] = field(default_factory=dict)
    holding: Counter[str] = field(default_factory=Counter)

    def update(self, metas: dict[str, RegionMeta], changed: Iterable[str]) -> None:
        for name in changed:
            self.holding.subtract(self.holds.pop(name, frozenset()))
            meta = metas.get(name)
            if meta is None:
                self.trash.discard(name)
                self.lost.discard(name)
                continue
            if name.startswith(TRASH + "/"):
                self.trash.add(name)
            if meta.lost:
                self.lost.add(name)
            else:
                self.lost.discard(name)
            held = frozenset(holders([meta]))
            self.holds[name] = held
            self.holding.update(held)

    def holders(self) -> set[str]:
        return {n for n, count in self.holding.items() if count > 0}


class Survey:
    client: AsyncClient
    records: Records
    index: RegionIndex | None
    tally: DamageTally
    facets: Facets
    clock: Callable[[], float]
    grace: float
    _metas: dict[str, RegionMeta]
    # What the last survey read of ZooKeeper, reused for each slab of the pass.
    _live: dict[str, NodeInfo]
    _since: dict[str, float]
    _forced: set[str]
    _drains: set[str]
    progress: Progress

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
        self.facets.update(metas, changed)
        self._live, self._since, self._forced = live, since, forced
        self._drains = set(self.records.drains())
        damage = self.tally.update(
            metas, changed, live, since, self.clock(), self.grace, self._drains, forced
        )
        return damage, live, requests

    async def quiet(self) -> bool:
        """Whether a pass now would find nothing to do: the last one left nothing
        waiting, no region changed since, the live nodes are the same (the client's
        watch), and no operator's request, garbage or reader's check waits."""
        if self.index is None or self.progress.state != "idle":
            return False
        if self.facets.trash or self.facets.lost or self.index.pending("rebuilder"):
            return False
        now = {n: i.incarnation for n, i in self.client.live_nodes().items()}
        if now != {n: i.incarnation for n, i in self._live.items()}:
            return False  # a node joined, left or came back new
        paths = self.client.meta.paths
        for folder in (paths.rebuild_requests, paths.garbage, paths.checks):
            if await asyncio.to_thread(_has_children, self.client.meta.zk, folder):
                return False
        return True

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
        holding = self.facets.holders()
        for name, req in requests.items():
            node = str(req.get("node", ""))
            if node in live and float(req.get("listed_until", 0)) > time.time():
                continue  # dead already, listed until its session expires
            if node in ("", "*") or node in live or node not in holding:
                await asyncio.to_thread(self.records.done_request, name)


def _has_children(zk: KazooClient, folder: str) -> bool:
    try:
        return bool(zk.get_children(folder))
    except NoNodeError:
        return False
