"""An in-process grid: real storage-node servers (store, wire protocol, heartbeats) on
loopback sockets in the test's own event loop, registered in a real ZooKeeper, with
knobs to break, hang or slow any node for chosen kinds of request.

The real AsyncClient talks to them as to any cluster. A test runs in well under a
second and reaches into a node's store to set up what is hard to make happen on
time (a write staged on some nodes only, a commit that reached half of them).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from crc32c import crc32c

from ecmem import heartbeat, wire
from ecmem.aio import AsyncClient
from ecmem.meta.catalog import MetadataStore, connect_zk
from ecmem.meta.model import NodeInfo, RegionMeta
from storage_node.registration import Registration
from storage_node.server import NodeProtocol, NodeServer
from storage_node.store import FragmentStore

OK, BROKEN, HANG, SLOW = "ok", "broken", "hang", "slow"
_clusters = itertools.count(1)


class GridServer(NodeServer):
    """A node server whose answers a test can withhold, fail or delay."""

    def __init__(self, store: FragmentStore, node_id: str) -> None:
        super().__init__(store, node_id, allow_debug=True)
        self.mode = OK
        self.kinds: set[type[wire.Message]] = set()  # empty: every kind of request
        self.delay = 0.0
        self.seen: list[wire.Message] = []

    def hits(self, msg: wire.Message) -> bool:
        return self.mode != OK and (not self.kinds or type(msg) in self.kinds)

    def protocol(self) -> NodeProtocol:
        return GridProtocol(self)


class GridProtocol(NodeProtocol):
    server: GridServer

    def on_frame(self, req_id: int, msg: wire.Message) -> None:
        s = self.server
        s.seen.append(msg)
        if not s.hits(msg):
            super().on_frame(req_id, msg)
        elif s.mode == BROKEN:
            self.abort()  # the connection drops, as when a node dies mid-request
        elif s.mode == SLOW:
            asyncio.get_running_loop().call_later(s.delay, super().on_frame, req_id, msg)
        # HANG: never answered


@dataclass
class GridNode:
    id: str
    store: FragmentStore
    server: GridServer
    tcp: asyncio.Server
    beats: heartbeat.Responder
    info: NodeInfo

    def set(self, mode: str, *kinds: type[wire.Message], delay: float = 0.0) -> None:
        """Break, hang or slow this node for requests of ``kinds`` (all if none)."""
        self.server.mode, self.server.kinds, self.server.delay = mode, set(kinds), delay

    def heal(self) -> None:
        self.set(OK)


@dataclass
class Grid:
    zk_hosts: str
    cluster: str
    nodes: dict[str, GridNode] = field(default_factory=dict)
    clients: list[AsyncClient] = field(default_factory=list)
    stopped: set[str] = field(default_factory=set)
    _zk: Any = None  # the grid nodes' ZooKeeper session

    @classmethod
    async def start(cls, zk_hosts: str, count: int = 6) -> Grid:
        g = cls(zk_hosts, f"grid{next(_clusters)}-{uuid.uuid4().hex[:6]}")
        g._zk = await asyncio.to_thread(connect_zk, zk_hosts, 10.0, 10.0)
        for i in range(1, count + 1):
            await g.add(f"n{i}")
        return g

    async def add(self, node_id: str, capacity: int = 1 << 30) -> GridNode:
        store = FragmentStore(capacity)
        server = GridServer(store, node_id)
        server.incarnation = uuid.uuid4().hex[:16]
        tcp = await server.listen("127.0.0.1", 0)
        host, port = tcp.sockets[0].getsockname()[:2]
        beats = heartbeat.serve(host, port)
        info = NodeInfo(
            node_id, f"{host}:{port}", capacity, 0, node_id, server.incarnation, "grid", 0, 0.0
        )
        await asyncio.to_thread(Registration(self._zk, self.cluster, info).register)
        node = self.nodes[node_id] = GridNode(node_id, store, server, tcp, beats, info)
        return node

    async def client(self) -> AsyncClient:
        zk = await asyncio.to_thread(connect_zk, self.zk_hosts, 10.0, 10.0)
        c = AsyncClient(zk, self.cluster)
        await c.start()
        # Until the client's watch sees every node (a busy machine may take a while).
        for _ in range(2000):
            if len(c.live_nodes()) >= len(self.nodes) - len(self.stopped):
                break
            await asyncio.sleep(0.005)
        self.clients.append(c)
        return c

    def holders(self, meta: RegionMeta, slab: int = 0) -> list[GridNode]:
        return [self.nodes[n] for n, _ in meta.slabs[slab]]

    def stage(
        self,
        meta: RegionMeta,
        stripe: int,
        version: int,
        frags: list[bytes],
        extent: tuple[int, int, int],
        indexes: Iterable[int] | None = None,
    ) -> None:
        """Put fragments of a write staged straight into the stores of their holders,
        as a writer that died would have left them."""
        slab = stripe // meta.slab_stripes
        for i in range(len(frags)) if indexes is None else indexes:
            node = self.nodes[meta.slabs[slab][i][0]]
            node.store.fence(meta.id, wire.epoch_of(version))
            data = frags[i]
            node.store.put(meta.id, stripe, i, version, len(data), crc32c(data), data, extent)

    async def stop(self, node_id: str) -> None:
        """The node dies: it stops answering and leaves the cluster's membership."""
        node = self.nodes[node_id]
        self.stopped.add(node_id)
        node.set(BROKEN)
        node.tcp.close()
        node.beats.close()
        await asyncio.to_thread(Registration(self._zk, self.cluster, node.info).deregister)

    def drop_lease(self, name: str) -> None:
        """The region's lease goes, as when its holder's session expires."""
        md = MetadataStore(self._zk, self.cluster)
        self._zk.delete(md.paths.lease(name))

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
        for node in self.nodes.values():
            node.tcp.close()
            node.beats.close()
        await asyncio.to_thread(self._stop)

    def _stop(self) -> None:
        self._zk.stop()
        self._zk.close()
