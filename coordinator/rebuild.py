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
from dataclasses import dataclass, field
from typing import Any

from ecmem import extents, wire
from ecmem.aio import AsyncClient
from ecmem.damage import DRAINING, PARTIAL, REPLACED, Damage, Slot, by_slab, find_damage
from ecmem.errors import EcmemError, Fenced, NotEnoughNodesError, RegionBusy, RegionNotFound
from ecmem.health import slab_stripe_count
from ecmem.layout import Layout
from ecmem.logs import where
from ecmem.meta.catalog import TRASH
from ecmem.meta.model import NodeInfo, RegionMeta
from ecmem.meta.records import Records
from ecmem.placement import Candidate, replacement
from ecmem.policy import ECPolicy
from ecmem.repair import (
    REPAIR_TIMEOUT,
    Retry,
    Strays,
    committed_versions,
    store_fragment,
    via,
)
from ecmem.stripes import DEGRADED_TIMEOUT, Got, RegionView

log = logging.getLogger(__name__)

WINDOW = 4  # stripes rebuilt at once
LEASE_SLICE = 5.0  # seconds a rebuild keeps a region's lease before letting writers in
GARBAGE_DELAY = 5.0  # seconds before an old holder's copies are deleted
TRASH_DELAY = 10.0  # seconds a mount has to take the lease of a file it moved to the trash


@dataclass
class Progress:
    """What a rebuild pass did and has left, as kept in ZooKeeper."""

    state: str = "idle"  # idle, waiting (grace or leases), running
    started: float = 0.0
    updated: float = 0.0
    bytes_done: int = 0
    bytes_total: int = 0
    slots_done: int = 0
    slots_total: int = 0
    waiting: dict[str, str] = field(default_factory=dict)  # what holds work back, and why
    grace: dict[str, float] = field(default_factory=dict)  # node -> seconds before rebuild
    unrecoverable: list[str] = field(default_factory=list)
    grace_delay: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Rebuilder:
    def __init__(
        self,
        client: AsyncClient,
        grace: float = 30.0,
        clock: Callable[[], float] = time.time,
        log_: logging.Logger = log,
        identifier: str = "",
    ) -> None:
        self.client = client
        self.records = Records(client.zk, client.meta.paths)
        self.grace = grace
        self.clock = clock
        self.log = log_
        self.progress = Progress()
        self.stopping = False
        self._metas: dict[str, RegionMeta] = {}
        self._swept: set[str] = set()  # live nodes checked for orphans since they joined
        # What the last survey read of ZooKeeper, reused for each slab of the pass.
        self._live: dict[str, NodeInfo] = {}
        self._since: dict[str, float] = {}
        self._forced: set[str] = set()
        self._drains: set[str] = set()
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

    async def _zk(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    # -- one pass -----------------------------------------------------------------

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
        regions = store.regions()
        self._metas = {m.name: m for m in regions}
        self._live, self._since, self._forced = live, since, forced
        self._drains = set(self.records.drains())
        damage = find_damage(regions, live, since, self.clock(), self.grace, self._drains, forced)
        return damage, live, requests

    def _recheck(self, meta: RegionMeta, slab: int) -> tuple[list[Slot], dict[str, NodeInfo]]:
        """The slab's damage by its current record, with the pass's view of the nodes
        (membership kept current by the client's watch): no full survey per slab."""
        live = {n: self._live.get(n, info) for n, info in self.client.live_nodes().items()}
        damage = find_damage(
            [meta], live, self._since, self.clock(), self.grace, self._drains, self._forced
        )
        return [s for s in damage.slots if s.slab == slab], live

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
        await self._zk(self.records.set_tasks, _tasks(damage.slots))
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
        await self.collect_garbage()
        await self.collect_trash()
        for node in sorted(set(live) - self._swept):
            await self.sweep(node)
        self._swept = set(live)
        left, _, _ = await self._zk(self.survey)
        await self._close_requests(requests)
        await self._zk(self.records.set_tasks, _tasks(left.slots))
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

    async def _close_requests(self, requests: dict[str, dict[str, Any]]) -> None:
        """A request for one node stands until the node holds nothing (or is back);
        others were served by this pass."""
        live = await self._zk(self.client.meta.live_nodes)
        holding = {n for m in self._metas.values() for slab in m.slabs for n, _ in slab}
        for name, req in requests.items():
            node = str(req.get("node", ""))
            if node in ("", "*") or node in live or node not in holding:
                await self._zk(self.records.done_request, name)

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
        try:
            if not await self._lease(region, held):
                return
            await self._repair(region, slab)
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
                "rebuild of region %s slab %d failed, will retry next pass: %s",
                region,
                slab,
                exc,
                extra=where(region, slab),
            )

    async def _repair(self, region: str, slab: int) -> None:
        client = self.client
        meta = await client.region_meta(region)
        w = client.writer_of(region)
        # Look again under the lease: placements may have moved since the survey.
        slots, live = self._recheck(meta, slab)
        if not slots or slab >= len(meta.slabs):
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
                meta, view, stripe, entry, targets, w.epoch, strays.get(stripe, {})
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

    async def retry_lost(self, held: dict[str, float]) -> None:
        """Look again for the stripes recorded lost: a node may have come back with them.
        Those found whole again (k fragments of their newest version anywhere) are stored
        back on their holders and no longer lost."""
        for meta in list(self._metas.values()):
            if not meta.lost or self.stopping:
                continue
            try:
                if not await self._lease(meta.name, held):
                    continue
                meta = await self.client.region_meta(meta.name)
                found = await self._find_lost(meta, self.client.writer_of(meta.name).epoch)
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
            if not found:
                continue
            epoch = self.client.writer_of(meta.name).epoch

            def change(
                m: RegionMeta, epoch: int = epoch, found: extents.Ranges = found
            ) -> RegionMeta | None:
                if m.epoch != epoch:
                    raise Fenced(f"region {m.name}: a writer took over while it was repaired")
                lost = extents.minus(m.lost, found)
                if lost == m.lost:
                    return None
                m.lost = lost
                return m

            await self._zk(self.client.meta.update_region, meta.name, change)
            self.log.warning(
                "region %s: stripes %s, recorded lost, were found again and are whole",
                meta.name,
                extents.describe(found),
                extra=where(meta.name),
            )

    async def _find_lost(self, meta: RegionMeta, epoch: int) -> extents.Ranges:
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
                    meta, view, stripe, stripes[stripe], targets, epoch, strays.get(stripe, {})
                ):
                    found.append(stripe)
        return extents.of(found)

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
        epoch: int,
        strays: dict[int, str],
    ) -> bool:
        version, write, have = entry
        layout = view.layout
        policy = layout.policy
        size = layout.fragment_size
        # A partial holder that has this stripe already needs nothing.
        need = [i for i in targets if not (i in have and targets[i] == view.placement(stripe)[i])]
        if not need:
            return True
        frags: dict[int, bytes] = {}
        # A draining holder still has its fragment: copy it rather than decode.
        for i in need:
            if i in have:
                got = await self.client.io.fetch(
                    view, stripe, i, 0, size, DEGRADED_TIMEOUT, avoid_suspects=False, want=version
                )
                if isinstance(got, Got):
                    frags[i] = bytes(got.data)
        rest = [i for i in need if i not in frags]
        if rest:
            # A stray (a node that left the placement keeping its copy) stands in for an
            # index whose holder lacks this version.
            sources = await self._sources(
                via(view, stripe, strays, self.client.live_nodes()) if strays else view,
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
                self.client, meta, stripe, i, version, write, frags[i], size, targets[i], epoch
            )
            self.progress.bytes_done += size
            self.on_bytes(size)
        return True

    async def _sources(
        self, view: RegionView, stripe: int, version: int, have: set[int], k: int
    ) -> dict[int, bytes] | None:
        """k fragments of ``version``, data fragments first (late binding over the rest)."""
        size = view.layout.fragment_size
        got: dict[int, bytes] = {}
        order = sorted(have)
        while len(got) < k and order:
            batch, order = order[: k - len(got)], order[k - len(got) :]
            outcomes = await asyncio.gather(
                *(
                    self.client.io.fetch(
                        view,
                        stripe,
                        i,
                        0,
                        size,
                        DEGRADED_TIMEOUT,
                        avoid_suspects=False,
                        want=version,
                    )
                    for i in batch
                )
            )
            for i, o in zip(batch, outcomes, strict=True):
                if isinstance(o, Got):
                    got[i] = bytes(o.data)
        return got if len(got) >= k else None

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
            m.partial = [p for p in m.partial if not (p[0] == slab and p[1] in hit)]
            now_lost = extents.union(extents.remove(m.lost, first, end), lost)
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
        if lost:
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

    async def sweep(self, node: str) -> int:
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
        metas = {m.id: m for m in await self._zk(self.client.meta.regions)}
        stale: set[tuple[str, int]] = set()
        for rid, stripe, *_ in reply.entries:
            meta = metas.get(rid)
            if meta is None:
                continue  # a region removed: its own removal (or scrub) deals with it
            slab = int(stripe) // meta.slab_stripes
            if slab >= len(meta.slabs) or all(n != node for n, _ in meta.slabs[slab]):
                if not _has_lost(meta, slab):  # what it holds may be all that is left
                    stale.add((rid, slab))
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

    async def collect_trash(self) -> int:
        """Delete files a mount unlinked (or renamed over) while it had them open, once
        no mount holds them: a mount keeps the lease of such a file until its last
        close, and loses it with its ZooKeeper session if it dies."""
        names = await self._zk(self.client.meta.region_names, TRASH + "/")
        done = 0
        for name in names:
            meta = self._metas.get(name)
            if meta is None or self.clock() - meta.ctime < TRASH_DELAY:
                continue
            if await self._zk(self.client.meta.zk.exists, self.client.meta.paths.lease(name)):
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
                if slab < len(meta.slabs) and any(n == node for n, _ in meta.slabs[slab]):
                    await self._zk(self.records.done_garbage, name)  # it holds the slab again
                    continue
                if _has_lost(meta, slab):
                    continue  # kept while the slab has lost stripes: they may be here
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


def _has_lost(meta: RegionMeta, slab: int) -> bool:
    first = slab * meta.slab_stripes
    return bool(extents.within(meta.lost, first, first + meta.slab_stripes))


def _tasks(slots: list[Slot]) -> dict[str, list[list[Any]]]:
    out: dict[str, list[list[Any]]] = {}
    for s in slots:
        out.setdefault(s.region, []).append([s.slab, s.index, list(s.holder), s.reason])
    return out
