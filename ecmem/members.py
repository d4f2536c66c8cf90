"""The storage nodes a client knows of: kept current by a ZooKeeper watch, so that
finding a node's address costs no round trip; and where new slabs go."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException

from .errors import EcmemError, NotEnoughNodesError
from .layout import Layout
from .meta.catalog import MetadataStore
from .meta.model import NodeInfo, RegionMeta
from .placement import Candidate, place_slabs, replacement

Placement = list[tuple[str, str]]

DROPPED_REACHABLE = 10.0  # seconds a node ZooKeeper dropped is still asked at its address
# A new region of at most this many slabs (4 GiB at the default 64 MiB) has them
# placed at creation, which fails early when the cluster lacks the room.
EAGER_SLABS = 64


class Members:
    def __init__(self, zk: KazooClient, meta: MetadataStore) -> None:
        self.zk = zk
        self.meta = meta
        self._nodes: dict[str, NodeInfo] = {}
        self._dropped: dict[str, float] = {}  # node -> when the watch last lost it
        self._last: dict[str, NodeInfo] = {}  # node -> its record when it was lost
        self._lock = threading.Lock()

    def watch(self) -> None:
        """Start following the live nodes (blocking: run it off the event loop)."""

        def changed(children: list[str]) -> None:
            nodes: dict[str, NodeInfo] = {}
            for child in children:
                try:
                    raw, _ = self.zk.get(self.meta.paths.node(child))
                    nodes[child] = NodeInfo.from_json(raw)
                except (KazooException, EcmemError):
                    continue
            self.update(nodes)

        self.zk.ChildrenWatch(self.meta.paths.nodes, changed)

    def update(self, nodes: dict[str, NodeInfo]) -> None:
        """The live nodes are now ``nodes`` (the watch's news)."""
        with self._lock:
            now = time.monotonic()
            for gone in set(self._nodes) - set(nodes):
                self._dropped[gone] = now
                self._last[gone] = self._nodes[gone]
            self._nodes = nodes

    def live(self) -> dict[str, NodeInfo]:
        return dict(self._nodes)

    def lately_live(self, within: float) -> set[str]:
        """Nodes live now or dropped from the live list in the last ``within`` seconds:
        a ZooKeeper failover that outlasts the nodes' sessions drops every node for the
        moment it takes them to register again."""
        now = time.monotonic()
        return set(self._nodes) | {n for n, at in self._dropped.items() if now - at < within}

    def address(self, node_id: str) -> str | None:
        """Where a live node, or one dropped in the last DROPPED_REACHABLE seconds,
        listens: a ZooKeeper failover drops every node for a moment, and requests to a
        node still serving should not fail meanwhile (a node restarted since answers
        with a new incarnation, which readers and writers check)."""
        info = self._nodes.get(node_id)
        if info is not None:
            return info.address
        at = self._dropped.get(node_id)
        last = self._last.get(node_id)
        if at is None or last is None or time.monotonic() - at > DROPPED_REACHABLE:
            return None
        return last.address

    def addresses(self) -> dict[str, str]:
        return {n: info.address for n, info in self._nodes.items()}

    def place(self, meta: RegionMeta, slabs: Iterable[int]) -> dict[int, Placement]:
        """Placements for the unplaced slabs among ``slabs``, by the nodes' current free
        memory (blocking: reads ZooKeeper)."""
        todo = sorted(set(slabs) - set(meta.slabs))
        if not todo:
            return {}
        layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
        live = self.meta.live_nodes()
        draining = set(self.meta.draining())
        cands = [
            Candidate(n.id, n.failure_domain or n.id, n.free)
            for n in live.values()
            if n.id not in draining
        ]
        rng = random.Random(f"{meta.id}/{todo[0]}")
        ids = place_slabs(cands, len(todo), layout.policy.width, layout.slab_fragment_bytes, rng)
        return {
            s: [(i, live[i].incarnation) for i in slab] for s, slab in zip(todo, ids, strict=True)
        }

    def create(self, meta: RegionMeta, exist_ok: bool) -> RegionMeta:
        """Store a new region's record, with its slabs placed if it has at most
        EAGER_SLABS (blocking: reads ZooKeeper). A larger region's slabs are placed as
        they are first written: its record stays small and no node is charged for
        address space never written."""
        layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
        pol = layout.policy
        slabs = layout.slabs_for(meta.size)
        slabs = slabs if slabs <= EAGER_SLABS else 0
        # Nothing to place (an empty file, say): the watched membership suffices, and
        # the create is one ZooKeeper write.
        live = self.live() if slabs == 0 and self._nodes else self.meta.live_nodes()
        if len(live) < pol.width:
            raise NotEnoughNodesError(
                f"policy {pol.name} needs {pol.width} live storage nodes on distinct hosts, "
                f"the cluster has {len(live)}: start more nodes or choose a narrower policy"
            )
        meta.slabs = self.place(meta, range(slabs)) if slabs else {}
        try:
            self.meta.create_region(meta)
        except EcmemError:
            if exist_ok:
                return self.meta.get_region(meta.name)[0]
            raise
        return meta


def handoff_holder(
    live: dict[str, NodeInfo],
    draining: set[str],
    suspect: Callable[[str], bool],
    meta: RegionMeta,
    slab: int,
    failed: str,
) -> tuple[str, str]:
    """A live node outside the slab to take over the slot ``failed`` held, by the
    placement rules; ("", "") if none qualifies (the slot is left vacant)."""
    layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
    members = {n for n, _ in meta.slabs[slab]}
    cands = [
        Candidate(n.id, n.failure_domain or n.id, n.free)
        for n in live.values()
        if not suspect(n.id) and n.id not in draining
    ]
    domains = [live[n].failure_domain or n for n in members if n in live and n != failed]
    try:
        pick = replacement(cands, members, domains, layout.slab_fragment_bytes, random.Random())
    except NotEnoughNodesError:
        return ("", "")
    return (pick, live[pick].incarnation)
