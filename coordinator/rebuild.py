"""The rebuilder: gives every damaged fragment slot (see damage.py) a healthy holder.

For each damaged slab it takes the region's write lease (so no writer races it and a
newer writer fences it off), picks a replacement node by the placement rules, reads
k surviving fragments of each stripe's committed version, reconstructs the missing
one (or copies it from a draining node), stores it committed on the replacement with
its original version, and only then switches the placement in ZooKeeper with a
versioned set that checks the lease's epoch. The old holder's copies are deleted
later (garbage), once readers have seen the new placement.

Everything it needs is in ZooKeeper (placements, membership, the grace clock), so
another coordinator, or a rerun, picks up where a dead one stopped; repairing a
fragment twice stores the same bytes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from ecmem import extents, wire
from ecmem.aio import AsyncClient
from ecmem.damage import (
    DRAINING,
    PARTIAL,
    REPLACED,
    DamageTally,
    Slot,
    by_slab,
)
from ecmem.errors import EcmemError, Fenced, NotEnoughNodesError, RegionBusy, RegionNotFound
from ecmem.health import slab_stripe_count
from ecmem.layout import Layout
from ecmem.logs import where
from ecmem.meta.model import NodeInfo, RegionMeta
from ecmem.meta.records import Records
from ecmem.placement import Candidate, replacement
from ecmem.policy import ECPolicy
from ecmem.repair import (
    Retry,
    Strays,
    carry_patches,
    committed_versions,
    fetch_raw,
    fetch_sources,
    store_fragment,
    stripe_patches,
    via,
)
from ecmem.stripes import Got, RegionView
from ecmem.writers import Writer

from .backoff import Backoff
from .garbage import GARBAGE_DELAY, Collector
from .index import RegionIndex
from .lost import LostStripes
from .progress import Progress, tasks_of
from .survey import Facets, Survey

log = logging.getLogger(__name__)

WINDOW = 4  # stripes rebuilt at once
LEASE_SLICE = 5.0  # seconds a rebuild keeps a region's lease before letting writers in


class Rebuilder(LostStripes, Survey):
    def __init__(
        self,
        client: AsyncClient,
        grace: float = 30.0,
        clock: Callable[[], float] = time.time,
        log_: logging.Logger = log,
        identifier: str = "",
        index: RegionIndex | None = None,
    ) -> None:
        self.client = client
        self.index = index
        self.tally = DamageTally()
        self.facets = Facets()
        self.records = Records(client.zk, client.meta.paths)
        self.grace = grace
        self.clock = clock
        self.log = log_
        self.progress = Progress()
        self.stopping = False
        self._metas = {}
        self.garbage = Collector(client, self.records, clock, log_)
        self.backoff = Backoff()  # per (region, slab) that failed
        self._live, self._since, self._forced, self._drains = {}, {}, set(), set()
        # Slots no node could take over this pass, by reason: one line each in status.
        self._unplaced: dict[str, set[tuple[str, int, int]]] = {}
        # Hooks for metrics: fragment bytes stored, slots switched.
        self.on_bytes: Callable[[int], None] = lambda _n: None
        self.on_slot: Callable[[], None] = lambda: None
        client.holder = {
            **client.holder,
            "holder": f"rebuilder {identifier or client.holder['holder']}",
            "rebuild": True,
        }

    # -- one pass -----------------------------------------------------------------

    async def run_once(self) -> Progress:
        """Rebuild everything damaged now; returns the pass's progress."""
        damage, live, requests = await self._zk(self.survey)
        # Stripes found lost are recorded in their region (REGION_DATA_LOST) until they are
        # readable again, rewritten, cut off or accepted; REBUILD_FAILED is this pass's.
        p = self.progress = Progress(
            started=self.clock(),
            grace=dict(damage.waiting),
            grace_delay=self.grace,
        )
        groups = by_slab(damage.slots)
        p.slots_total = len(damage.slots)
        p.bytes_total = sum(self._slab_bytes(slots) for slots in groups.values())
        await self._zk(self.records.set_tasks, tasks_of(damage.slots))
        if groups:
            p.state = "running"
            self.log.info(
                "rebuild: %d fragment slots in %d slabs of %d regions to rebuild",
                p.slots_total,
                len(groups),
                len({r for r, _ in groups}),
            )
        await self._publish()
        held: dict[str, float] = {}
        try:
            for (region, slab), slots in groups.items():
                if self.stopping:
                    break
                await self._rebuild_slab(region, slab, slots, held)
                await self._publish()
            await self.retry_lost(held)
        finally:
            for region in held:
                await self.client.release(region)
        self._report_unplaced()
        await self.garbage.collect_garbage()
        await self.garbage.collect_trash(self._metas, sorted(self.facets.trash))
        await self.garbage.sweep_new(set(live), self._metas)
        left, _, _ = await self._zk(self.survey)
        await self._close_requests(requests)
        await self._zk(self.records.set_tasks, tasks_of(left.slots))
        p.state = "waiting" if (p.waiting or left.waiting or left.slots) else "idle"
        p.grace = dict(left.waiting)
        await self._publish()
        return p

    def _slab_bytes(self, slots: list[Slot]) -> int:
        meta = self._metas.get(slots[0].region)
        if meta is None:
            return 0
        layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
        return slab_stripe_count(meta, slots[0].slab) * layout.fragment_size * len(slots)

    async def _publish(self) -> None:
        self.progress.updated = self.clock()
        try:
            await self._zk(self.records.set_progress, self.progress.to_dict())
        except Exception as exc:  # progress is for show; never stop a rebuild for it
            self.log.debug("could not publish rebuild progress: %s", exc)

    # -- one slab -----------------------------------------------------------------

    async def _lease(self, region: str, held: dict[str, float]) -> bool:
        """Hold the region's write lease (a slice of time at most); False if a writer has it."""
        now = self.clock()
        if region in held and now - held[region] > LEASE_SLICE:
            await self.client.release(region)
            del held[region]
        if region not in held:
            try:
                await self.client.writer(region, None)
            except RegionBusy as exc:
                self.progress.waiting[region] = f"open for writing by {exc.holder}"
                self.log.info(
                    "rebuild of region %s waits: it is open for writing by %s",
                    region,
                    exc.holder,
                    extra=where(region),
                )
                return False
            held[region] = now
        return True

    async def _rebuild_slab(
        self, region: str, slab: int, slots: list[Slot], held: dict[str, float]
    ) -> None:
        if wait := self.backoff.wait((region, slab)):
            self.progress.waiting.setdefault(f"{region}/{slab}", f"retried in {wait:.1f}s")
            return
        try:
            if not await self._lease(region, held):
                return
            await self._repair(region, slab)
            self.backoff.succeeded((region, slab))
        except RegionNotFound:
            return
        except Fenced as exc:
            held.pop(region, None)
            self.log.warning(
                "rebuild of region %s slab %d stopped: %s",
                region,
                slab,
                exc,
                extra=where(region, slab),
            )
        except EcmemError as exc:
            self.progress.waiting[f"{region}/{slab}"] = str(exc)
            self.log.warning(
                "rebuild of region %s slab %d failed, will retry in %.1fs: %s",
                region,
                slab,
                self.backoff.failed((region, slab)),
                exc,
                extra=where(region, slab),
            )

    async def _repair(self, region: str, slab: int) -> None:
        client = self.client
        meta = await client.region_meta(region)
        w = client.writer_of(region)
        # Look again under the lease: placements may have moved since the survey.
        slots, live = self._recheck(meta, slab)
        if not slots or slab not in meta.slabs:
            return
        layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
        targets = self._targets(meta, slab, slots, live, layout)
        if not targets:
            return
        view = client.make_view(meta)
        new_nodes = {t for t, _ in targets.values()}
        answers = await client.io.broadcast(sorted(new_nodes), wire.Fence(meta.id, w.epoch))
        for node, reply in answers.items():
            if not isinstance(reply, wire.Ok):
                raise Retry(f"replacement node {node} refused the region's epoch: {reply}")
        damaged = {s.index for s in slots if s.reason not in (PARTIAL, DRAINING)}
        strays: Strays = {}
        off: set[str] = set()
        stripes = await committed_versions(client, meta, view, slab, damaged, strays, off)
        lost: list[int] = []

        async def one(stripe: int, entry: tuple[int, tuple[int, int, int], set[int]]) -> None:
            if not await self._stripe(
                meta, view, stripe, entry, targets, w, strays.get(stripe, {})
            ):
                lost.append(stripe)

        sem = asyncio.Semaphore(WINDOW)

        async def bounded(stripe: int, entry: Any) -> None:
            async with sem:
                await one(stripe, entry)

        await asyncio.gather(*(bounded(s, e) for s, e in sorted(stripes.items())))
        # A written stripe of which no node holds anything is lost, never a hole: nothing
        # is "rebuilt" from nothing.
        first = slab * meta.slab_stripes
        span = extents.within(meta.written, first, first + slab_stripe_count(meta, slab))
        lost += [s for s in extents.stripes(span) if s not in stripes]
        if lost:
            self._report_lost(meta, slab, lost)
        # Copies left on nodes that left the slab go once it is whole again (while some
        # stripe is lost they are kept: they may yet help).
        await self._switch(
            meta, slab, slots, targets, w.epoch, set() if lost else off, extents.of(lost)
        )

    def _report_unplaced(self) -> None:
        for reason, slots in sorted(self._unplaced.items()):
            regions = sorted({r for r, _, _ in slots})
            what = (
                f"{len(slots)} fragment slots of {len(regions)} regions "
                f"({', '.join(regions[:3])}{', ...' if len(regions) > 3 else ''})"
            )
            self.progress.waiting[what] = f"no node can take them over: {reason}"
            self.log.warning("rebuild: %s wait: no node can take them over: %s", what, reason)
        self._unplaced = {}

    def _targets(
        self,
        meta: RegionMeta,
        slab: int,
        slots: list[Slot],
        live: dict[str, NodeInfo],
        layout: Layout,
    ) -> dict[int, tuple[str, str]]:
        """A new holder for each damaged slot: the handoff itself for a partial slot."""
        drains = self._drains
        members = {n for n, _ in meta.slabs[slab] if n}
        out: dict[int, tuple[str, str]] = {}
        cands = [
            Candidate(n.id, n.failure_domain or n.id, n.free)
            for n in live.values()
            if n.id not in drains and not self.client.pool.is_suspect(n.id)
        ]
        for s in slots:
            node = s.holder[0]
            # A handoff keeps its slot; a node back empty takes its own slot again (its
            # place in the slab's failure domains is unchanged, and nothing moves).
            if (s.reason == PARTIAL or s.reason == REPLACED and node not in drains) and (
                node in live and not self.client.pool.is_suspect(node)
            ):
                out[s.index] = (node, live[node].incarnation)
                continue
            healthy = members - {x.holder[0] for x in slots if x.reason != PARTIAL}
            domains = [live[n].failure_domain or n for n in healthy if n in live]
            taken = members | {t for t, _ in out.values()}
            try:
                pick = replacement(
                    cands, taken, domains, layout.slab_fragment_bytes, random.Random()
                )
            except NotEnoughNodesError as exc:
                self._unplaced.setdefault(str(exc), set()).add((meta.name, slab, s.index))
                continue
            out[s.index] = (pick, live[pick].incarnation)
            members.add(pick)
        return out

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
        version, write, have = entry
        layout = view.layout
        policy = layout.policy
        size = layout.fragment_size
        # A partial holder that has this stripe already needs nothing.
        need = [i for i in targets if not (i in have and targets[i] == view.placement(stripe)[i])]
        if not need:  # readable only if k fragments of it exist somewhere
            return len(have | set(strays)) >= policy.k
        frags: dict[int, bytes] = {}
        # A draining holder still has its fragment: copy it rather than decode.
        for i in need:
            if i in have:
                got = await fetch_raw(self.client, view, stripe, i, version)
                if isinstance(got, Got):
                    frags[i] = bytes(got.data)
        rest = [i for i in need if i not in frags]
        # A stray (a node that left the placement keeping its copy) stands in for an
        # index whose holder lacks this version.
        seen = via(view, stripe, strays, self.client.live_nodes()) if strays else view
        # Fragments are rebuilt without their page patches (parity never has them laid
        # over); the patches go along, or readers of the new holder would miss them.
        patches = await stripe_patches(self.client, seen, stripe, version)
        if patches is None:
            raise Retry(f"stripe {stripe}: too few of its nodes answered for its page patches")
        if rest:
            sources = await fetch_sources(
                self.client,
                seen,
                stripe,
                version,
                (have - set(need)) | set(strays),
                policy.k,
            )
            if sources is not None and set(sources) & set(strays):
                self.log.warning(
                    "region %s stripe %d: rebuilt with copies off its placement on %s "
                    "(their holders had left it)",
                    meta.name,
                    stripe,
                    ", ".join(sorted({strays[i] for i in set(sources) & set(strays)})),
                    extra=where(meta.name, view.layout.slab_of(stripe)),
                )
            if sources is None:
                return False
            frags.update({i: sources[i] for i in rest if i in sources})  # strays of those
            rest = [i for i in rest if i not in sources]
            if rest and isinstance(policy, ECPolicy):
                frags.update(policy.reconstruct(sources, rest))
            elif rest:
                copy = next(iter(sources.values()))
                frags.update({i: copy for i in rest})
        for i in need:
            await store_fragment(
                self.client, meta, stripe, i, version, write, frags[i], size, targets[i],
                lease.epoch,
            )  # fmt: skip
            await carry_patches(self.client, meta, stripe, i, patches, targets[i], lease)
            self.progress.bytes_done += size
            self.on_bytes(size)
        return True

    async def _switch(
        self,
        meta: RegionMeta,
        slab: int,
        slots: list[Slot],
        targets: dict[int, tuple[str, str]],
        epoch: int,
        leftovers: set[str],
        lost: extents.Ranges,
    ) -> None:
        """Point the slab at its new holders, now that they hold every stripe they can;
        record which of its stripes are ``lost`` (and that the others are not). Copies on
        the old holders and on ``leftovers`` become garbage, unless some stripe is lost."""
        old = {s.index: s.holder for s in slots if s.index in targets}
        first = slab * meta.slab_stripes
        end = first + meta.slab_stripes

        def change(m: RegionMeta) -> RegionMeta | None:
            if m.epoch != epoch:
                raise Fenced(
                    f"region {m.name}: a writer of epoch {m.epoch} took over during the rebuild"
                )
            hit = [i for i, h in old.items() if m.slabs[slab][i] == h]
            for i in hit:
                m.slabs[slab][i] = targets[i]
            m.settle_slots([(slab, i) for i in hit])
            # Only the lost-stripe pass (lost.py) takes stripes out of ``lost``: it stores
            # them on every holder, where this pass stored them only on the new ones.
            now_lost = extents.union(m.lost, lost)
            if not hit and now_lost == m.lost:
                return None
            m.lost = now_lost
            return m

        await asyncio.to_thread(self.client.meta.update_region, meta.name, change)
        now = self.clock()
        first = slab * meta.slab_stripes
        for i, (node, _) in old.items():
            self.progress.slots_done += 1
            self.on_slot()
            self.log.info(
                "region %s slab %d fragment %d: rebuilt on %s (was %s)",
                meta.name,
                slab,
                i,
                targets[i][0],
                node or "vacant",
                extra=where(meta.name, slab, i, targets[i][0]),
            )
        holders = {n for n, _ in targets.values()} | {
            n for i, (n, _) in enumerate(meta.slabs[slab]) if i not in targets
        }
        gone = {node for node, _ in old.values() if node} | leftovers
        if lost or extents.within(meta.lost, first, end):
            gone = set()  # they may hold what is lost, and come back with it
        for node in sorted(gone - holders):
            await self._zk(
                self.records.add_garbage,
                {
                    "node": node,
                    "region": meta.name,
                    "region_id": meta.id,
                    "from": first,
                    "until": first + meta.slab_stripes,
                    "upto": ((epoch + 1) << wire.SEQ_BITS) - 1,
                    "after": now + GARBAGE_DELAY,
                },
            )
