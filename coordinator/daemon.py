"""The coordinator: one elected leader watches membership and health.

Rebuild and scrub orchestration hang off the same leader loop (``run_once``
is called on a timer, so tests can step it instead of sleeping).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException

from ecmem.aio import AsyncClient
from ecmem.errors import EcmemError
from ecmem.health import HealthTally, RegionTotals, damaged_records, region_totals, summarize
from ecmem.meta.catalog import MetadataStore
from ecmem.meta.model import RegionMeta
from ecmem.meta.records import Records

from .index import RegionIndex
from .listing import Pages
from .metrics import CoordinatorMetrics
from .rebuild import Rebuilder
from .scrubcycle import ScrubCycle

log = logging.getLogger(__name__)


# The health summary is written when it changes, and at least this often so that readers
# can tell a current one from one a dead leader left.
HEALTH_REFRESH = 5.0
DETAIL_CAP = 200  # detail lines per check in the summary
# With nothing to do, the rebuilder's pass is skipped (a look at what changed costs
# next to nothing); a whole pass still runs this often.
FULL_PASS_EVERY = 10.0
HEALTH_EVERY = 2.0  # seconds between health passes, at least


class Monitor:
    """Logs nodes joining and leaving and changes of cluster health, and keeps the
    region side of health in ZooKeeper for ``ecmem status`` (see ``HEALTH_REFRESH``)."""

    def __init__(
        self,
        store: MetadataStore,
        log_: logging.Logger = log,
        clock: Callable[[], float] = time.time,
        metrics: CoordinatorMetrics | None = None,
        index: RegionIndex | None = None,
        identifier: str = "",
    ) -> None:
        self.store = store
        self.log = log_
        self.clock = clock
        self.metrics = metrics
        self.index = index
        self.identifier = identifier
        self.records = Records(store.zk, store.paths)
        self.live: dict[str, str] = {}
        self.status = ""
        self.tally = HealthTally()
        self._metas: dict[str, RegionMeta] = {}
        self._totals = RegionTotals()
        self._damaged: dict[str, str] = {}
        self._published: tuple[dict[str, object], float] = ({}, 0.0)
        self.pages: Pages | None = None
        self.follow(index)

    def follow(self, index: RegionIndex | None) -> None:
        """Work from ``index`` (None: read every record each pass), starting afresh."""
        self.index = index
        self.tally = HealthTally()
        self._metas = {}
        self.pages = Pages(self.store, self.clock) if index is not None else None

    def _regions(self) -> tuple[dict[str, RegionMeta], set[str]]:
        """Every region's record, and those changed since the last pass."""
        if self.index is None:
            metas = {m.name: m for m in self.store.regions()}
            return metas, set(metas) | set(self._metas)
        changed = self.index.take_changes("monitor")
        return (self.index.snapshot() if changed else self._metas), changed

    def run_once(self) -> str:
        nodes = self.store.all_nodes()
        live = {k: v.address for k, v in nodes.items() if v.state == "up"}
        for node_id in sorted(set(self.live) - set(live)):
            self.log.warning(
                "node %s left (was at %s); its fragments are unreachable until it returns",
                node_id,
                self.live[node_id],
            )
        for node_id in sorted(set(live) - set(self.live)):
            self.log.info("node %s joined at %s", node_id, live[node_id])
        self.live = live
        self._metas, changed = self._regions()
        up = {k: v for k, v in nodes.items() if v.state == "up"}
        per_region, holding = self.tally.update(self._metas, changed, up)
        damaged = self.index.damaged_now() if self.index is not None else dict(self.store.damaged)
        if self.tally.moved or damaged != self._damaged:
            self._totals = region_totals(per_region, holding, DETAIL_CAP)
            self._totals.checks += damaged_records(damaged, DETAIL_CAP)
            self._damaged = damaged
        self._publish()
        if self.pages is not None:
            self.pages.update(self._metas, changed)
            self.pages.publish()
        report = summarize(nodes, self._totals)
        if self.metrics is not None:
            self.metrics.observe_health(report)
        if report.status != self.status:
            summary = "; ".join(c.summary for c in report.checks) or "all good"
            self.log.log(
                logging.INFO if report.status == "HEALTH_OK" else logging.WARNING,
                "cluster health %s: %s",
                report.status,
                summary,
            )
            self.status = report.status
        return report.status

    def _publish(self) -> None:
        summary = self._totals.to_dict()
        last, at = self._published
        now = self.clock()
        if summary == last and now - at < HEALTH_REFRESH:
            return
        self.records.set_health({**summary, "updated": now, "by": self.identifier})
        self._published = (summary, now)


class Coordinator:
    def __init__(
        self,
        zk: KazooClient,
        cluster: str,
        identifier: str,
        interval: float = 2.0,
        grace: float = 30.0,
        scrub_interval: float = 0.0,
        scrub_repair: bool = True,
        metrics: CoordinatorMetrics | None = None,
        announce: dict[str, object] | None = None,
    ) -> None:
        self.zk = zk
        self.announce = announce or {"id": identifier}
        self.cluster = cluster
        self.store = MetadataStore(zk, cluster)
        self.identifier = identifier
        self.interval = interval
        self.grace = grace
        self.scrub_interval = scrub_interval
        self.scrub_repair = scrub_repair
        self.metrics = metrics
        self.stopping = threading.Event()
        self.monitor = Monitor(self.store, metrics=metrics, identifier=identifier)
        self.rebuilder: Rebuilder | None = None
        zk.add_listener(self._on_state)

    def _on_state(self, state: str) -> None:
        if state == KazooState.SUSPENDED:
            log.warning("ZooKeeper connection suspended")
        elif state == KazooState.LOST:
            log.error("ZooKeeper session lost; will stand for election again when reconnected")
            if self.rebuilder is not None:
                self.rebuilder.stopping = True

    def lead(self) -> None:
        log.info(
            "coordinator %s is the leader (rebuild grace %.1fs, background scrub %s)",
            self.identifier,
            self.grace,
            f"every {self.scrub_interval:.0f}s" if self.scrub_interval > 0 else "off",
        )
        if self.metrics is not None:
            self.metrics.leader.set(1)
        try:
            asyncio.run(self._lead())
        finally:
            if self.metrics is not None:
                self.metrics.leader.set(0)

    async def _lead(self) -> None:
        client = AsyncClient(self.zk, self.cluster, own_zk=False)
        await client.start()
        index = RegionIndex(self.zk, self.store.paths)
        started = time.monotonic()
        if not await asyncio.to_thread(index.start):
            log.warning("the region index is still loading; passes see regions as they arrive")
        log.info(
            "region index loaded: %d regions in %.1fs",
            len(index.snapshot()),
            time.monotonic() - started,
        )
        self.monitor.follow(index)
        watching = threading.Event()
        health = threading.Thread(
            target=self._watch_health, args=(watching,), name="health", daemon=True
        )
        health.start()
        self.rebuilder = rebuilder = Rebuilder(
            client, self.grace, identifier=self.identifier, index=index
        )
        scrubs = ScrubCycle(client, self.scrub_interval, self.scrub_repair)
        m = self.metrics
        if m is not None:
            rebuilder.on_bytes = m.rebuild_bytes.inc
            rebuilder.on_slot = m.rebuild_slots.inc
            scrubs.on_report = m.observe_scrub
            scrubs.on_summary = m.observe_scrub_summary
        full = 0.0
        try:
            while not self.stopping.is_set() and not rebuilder.stopping:
                try:
                    if time.monotonic() - full < FULL_PASS_EVERY and await rebuilder.quiet():
                        await asyncio.to_thread(self.stopping.wait, self.interval)
                        continue
                    full = time.monotonic()
                    progress = await rebuilder.run_once()
                    if m is not None:
                        m.observe_rebuild(progress)
                    if not rebuilder.stopping and await scrubs.run_once() is None and scrubs.queue:
                        continue  # mid-cycle: next region without waiting
                except (KazooException, EcmemError) as exc:
                    log.warning("coordinator pass failed: %s", exc)
                    if not self.zk.connected:
                        return
                await asyncio.to_thread(self.stopping.wait, self.interval)
        finally:
            self.rebuilder = None
            watching.set()
            await asyncio.to_thread(health.join)
            self.monitor.follow(None)
            index.close()
            await client.close()

    def _watch_health(self, done: threading.Event) -> None:
        """Health passes in a thread of their own: a long rebuild pass never leaves the
        summary stale."""
        while not done.is_set() and not self.stopping.is_set():
            try:
                self.monitor.run_once()
            except (KazooException, EcmemError) as exc:
                log.warning("health pass failed: %s", exc)
            done.wait(max(self.interval, HEALTH_EVERY))

    def run(self) -> None:
        self.store.ensure()
        self.store.migrate_legacy()  # records of the flat layout of earlier versions
        self.zk.ensure_path(self.store.paths.election)
        records = Records(self.zk, self.store.paths)
        while not self.stopping.is_set():
            try:  # again each round: a lost session took the ephemeral record with it
                records.announce(self.identifier, self.announce)
            except KazooException as exc:
                log.warning("could not announce this coordinator: %s", exc)
            election = self.zk.Election(self.store.paths.election, self.identifier)
            try:
                election.run(self.lead)
            except KazooException as exc:
                log.warning("election interrupted: %s; retrying", exc)
            if not self.stopping.is_set():
                self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()
        if self.rebuilder is not None:
            self.rebuilder.stopping = True
