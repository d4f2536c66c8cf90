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
from ecmem.health import assess
from ecmem.meta.catalog import MetadataStore
from ecmem.meta.records import Records

from .metrics import CoordinatorMetrics
from .rebuild import Rebuilder
from .scrubcycle import ScrubCycle

log = logging.getLogger(__name__)


class Monitor:
    """Logs nodes joining and leaving and changes of cluster health."""

    def __init__(
        self,
        store: MetadataStore,
        log_: logging.Logger = log,
        clock: Callable[[], float] = time.time,
        metrics: CoordinatorMetrics | None = None,
    ) -> None:
        self.store = store
        self.log = log_
        self.clock = clock
        self.metrics = metrics
        self.live: dict[str, str] = {}
        self.status = ""

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
        report, _ = assess(nodes, self.store.regions())
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
        self.monitor = Monitor(self.store, metrics=metrics)
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
        self.rebuilder = rebuilder = Rebuilder(client, self.grace, identifier=self.identifier)
        scrubs = ScrubCycle(client, self.scrub_interval, self.scrub_repair)
        m = self.metrics
        if m is not None:
            rebuilder.on_bytes = m.rebuild_bytes.inc
            rebuilder.on_slot = m.rebuild_slots.inc
            scrubs.on_report = m.observe_scrub
            scrubs.on_summary = m.observe_scrub_summary
        try:
            while not self.stopping.is_set() and not rebuilder.stopping:
                try:
                    await asyncio.to_thread(self.monitor.run_once)
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
            await client.close()

    def run(self) -> None:
        self.store.ensure()
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
