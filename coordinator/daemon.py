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

from .health import assess
from .metadata import MetadataStore
from .rebuild import Rebuilder

log = logging.getLogger(__name__)


class Monitor:
    """Logs nodes joining and leaving and changes of cluster health."""

    def __init__(
        self,
        store: MetadataStore,
        log_: logging.Logger = log,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.log = log_
        self.clock = clock
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
    ) -> None:
        self.zk = zk
        self.cluster = cluster
        self.store = MetadataStore(zk, cluster)
        self.identifier = identifier
        self.interval = interval
        self.grace = grace
        self.stopping = threading.Event()
        self.monitor = Monitor(self.store)
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
        log.info("coordinator %s is the leader (rebuild grace %.1fs)", self.identifier, self.grace)
        asyncio.run(self._lead())

    async def _lead(self) -> None:
        client = AsyncClient(self.zk, self.cluster, own_zk=False)
        await client._start()
        self.rebuilder = Rebuilder(client, self.grace, identifier=self.identifier)
        try:
            while not self.stopping.is_set() and not self.rebuilder.stopping:
                try:
                    await asyncio.to_thread(self.monitor.run_once)
                    await self.rebuilder.run_once()
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
        while not self.stopping.is_set():
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
