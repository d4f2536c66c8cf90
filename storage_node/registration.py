"""A node's presence in ZooKeeper: an ephemeral znode while it lives, a
persistent registry entry so the cluster remembers it when it dies."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.retry import KazooRetry

from ecmem.meta.model import NodeInfo
from ecmem.meta.paths import Paths

log = logging.getLogger(__name__)
OP_TIMEOUT = 5.0  # seconds a ZooKeeper call may take before the node gives up on it
REGISTER_DEADLINE = 60.0  # seconds a starting node tries to register through lost connections


class NodeIdInUse(Exception):
    pass


def _reachable(address: str, timeout: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


class Registration:
    def __init__(self, zk: KazooClient, cluster: str, info: NodeInfo) -> None:
        self.zk = zk
        self.paths = Paths(cluster)
        self.info = info
        self._published: bytes = b""
        zk.add_listener(self._on_state)

    def _on_state(self, state: str) -> None:
        if state == KazooState.LOST:
            log.error(
                "ZooKeeper session lost: node %s will re-register when it reconnects", self.info.id
            )
        elif state == KazooState.SUSPENDED:
            log.warning("ZooKeeper connection suspended; still serving clients")

    def register(self) -> None:
        """Create our ephemeral znode; a stale one from our previous life is replaced.
        A node starting while a ZooKeeper server fails over waits for another (up to
        REGISTER_DEADLINE seconds): a create whose answer was lost is found ours."""
        retry = KazooRetry(
            max_tries=-1, delay=0.1, max_delay=2.0, ignore_expire=False, deadline=REGISTER_DEADLINE
        )
        retry(self._register)

    def _register(self) -> None:
        zk, path = self.zk, self.paths.node(self.info.id)
        zk.ensure_path(self.paths.nodes)
        zk.ensure_path(self.paths.registry)
        data = self.info.to_json()
        try:
            zk.create(path, data, ephemeral=True)
        except NodeExistsError:
            try:
                raw, stat = zk.get(path)
            except NoNodeError:
                return self._register()
            if stat.ephemeralOwner == zk.client_id[0]:
                zk.set(path, data)
            else:
                old = NodeInfo.from_json(raw)
                if old.address != self.info.address and _reachable(old.address):
                    raise NodeIdInUse(
                        f"node id {self.info.id} is in use by a live node at {old.address}; "
                        "give this node another --id"
                    ) from None
                log.info("replacing stale registration of %s left by %s", self.info.id, old.address)
                try:
                    zk.delete(path)
                except NoNodeError:
                    pass
                zk.create(path, data, ephemeral=True)
        self._published = data
        record = NodeInfo(**{**self.info.__dict__, "used": 0, "state": "down"}).to_json()
        try:
            zk.create(self.paths.registered(self.info.id), record)
        except NodeExistsError:
            zk.set(self.paths.registered(self.info.id), record)
        log.info(
            "registered node %s at %s (domain %s, capacity %d bytes)",
            self.info.id,
            self.info.address,
            self.info.failure_domain,
            self.info.capacity,
        )

    def refresh(self, used: int) -> None:
        """Publish usage, and come back if our session expired meanwhile."""
        self.info.used = used
        data = self.info.to_json()
        path = self.paths.node(self.info.id)
        if not self.zk.connected:
            return
        # Bounded: a call caught by a lost connection must not hang the node's shutdown.
        if self.zk.exists_async(path).get(timeout=OP_TIMEOUT) is None:
            self.register()
        elif data != self._published:
            self.zk.set_async(path, data).get(timeout=OP_TIMEOUT)
            self._published = data

    async def run(self, used: Callable[[], int], interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.refresh, used())
            except Exception as exc:  # keep serving data whatever ZooKeeper does
                log.warning("could not refresh registration of %s: %s", self.info.id, exc)

    def deregister(self) -> None:
        """Leave at once (clients stop using us now); unreachable ZooKeeper drops our
        znode with the session anyway."""
        if not self.zk.connected:
            log.info("ZooKeeper unreachable: node %s leaves with its session", self.info.id)
            return
        try:
            self.zk.delete_async(self.paths.node(self.info.id)).get(timeout=OP_TIMEOUT)
        except Exception:  # best effort on the way out
            pass
