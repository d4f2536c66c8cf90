"""The asyncio client: ``client = await ecmem.aio.connect()``.

ZooKeeper is used on create, open, stat, growth into a new slab, flush and
close; reads and writes go straight to the storage nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, NodeExistsError

from ecmem.meta import lease
from ecmem.meta.catalog import MetadataStore, connect_zk
from ecmem.meta.model import NodeInfo, RegionMeta
from ecmem.placement import Candidate, place_slabs, replacement

from . import extents, wire
from .conn import ConnectionPool
from .errors import (
    ClosedError,
    ClusterError,
    ConfigError,
    CoordinationError,
    DataLostError,
    EcmemError,
    NodeUnavailable,
    NotEnoughNodesError,
    RegionNotFound,
)
from .heartbeat import Detector
from .layout import DEFAULT_SLAB, Layout, check_chunk, default_geometry
from .memtune import tune_malloc
from .names import validate_name
from .policy import parse_policy
from .recovery import (
    Staged,
    choose_kept,
    fence_quorum,
    record_writes,
    settle_written,
    unfenced_slabs,
)
from .regionfile import AsyncRegionFile, parse_mode
from .stat import RegionStat
from .stripes import RegionView, StripeIO
from .target import resolve, unreachable
from .units import parse_size
from .writers import Writer

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_POLICY = "ec:4+2"


# Test-only: a build with fencing switched off, so the chaos suite can show that its
# stale-writer scenario fails without it. Never set it for real data.
UNSAFE_NO_FENCING = os.environ.get("ECMEM_UNSAFE_NO_FENCING") == "1"


class AsyncClient:
    """A connection to one ecmem cluster. Create with :func:`connect`."""

    def __init__(self, zk: KazooClient, cluster: str, *, own_zk: bool = True) -> None:
        self.zk = zk
        self.cluster = cluster
        self.meta = MetadataStore(zk, cluster)
        self._own_zk = own_zk
        self._nodes: dict[str, NodeInfo] = {}
        self._nodes_lock = threading.Lock()
        self.pool = ConnectionPool(self.address)
        self.io = StripeIO(self.pool)
        self.io.replace = self._replace
        self._regions: dict[str, tuple[RegionMeta, int]] = {}
        self._watched: set[str] = set()
        self._writers: dict[str, Writer] = {}
        self.holder = {
            "holder": f"{socket.gethostname()}:{os.getpid()}",
            "pid": os.getpid(),
            "client": uuid.uuid4().hex[:12],
        }
        self._region_locks: dict[str, asyncio.Lock] = {}
        self._epoch_locks: dict[str, asyncio.Lock] = {}
        self._views: dict[str, tuple[RegionMeta, RegionView]] = {}
        self._placement_locks: dict[str, asyncio.Lock] = {}
        self.closed = False
        self._beats: asyncio.Task[None] | None = None

    # -- set-up -----------------------------------------------------------------

    async def start(self) -> None:
        await self._zk(self.meta.ensure)
        await self._zk(self._watch_nodes)
        self.zk.add_listener(self._on_zk_state)
        detector = Detector(
            lambda: {n: info.address for n, info in self._nodes.items()}, self.pool.beats
        )
        self._beats = asyncio.create_task(detector.run())

    def _on_zk_state(self, state: str) -> None:
        if state == KazooState.LOST and not UNSAFE_NO_FENCING:
            # Our leases went with the session: someone else may be writing by now.
            for w in list(self._writers.values()):
                w.fence_off("the ZooKeeper session, and with it the write lease, expired")

    def _watch_nodes(self) -> None:
        def changed(children: list[str]) -> None:
            nodes: dict[str, NodeInfo] = {}
            for child in children:
                try:
                    raw, _ = self.zk.get(self.meta.paths.node(child))
                    nodes[child] = NodeInfo.from_json(raw)
                except (KazooException, EcmemError):
                    continue
            with self._nodes_lock:
                self._nodes = nodes

        self.zk.ChildrenWatch(self.meta.paths.nodes, changed)

    def address(self, node_id: str) -> str | None:
        info = self._nodes.get(node_id)
        return info.address if info is not None else None

    async def _zk(self, fn: Callable[..., T], *args: Any) -> T:
        if self.closed:
            raise ClosedError("client is closed")
        try:
            return await asyncio.to_thread(fn, *args)
        except KazooException as exc:
            raise CoordinationError(f"ZooKeeper request failed: {exc!r}; retry") from exc

    async def close(self) -> None:
        if self.closed:
            return
        for name in list(self._writers):
            try:
                await self.release(name)
            except EcmemError as exc:
                log.warning("could not release the write lease of %s: %s", name, exc)
        self.closed = True
        if self._beats is not None:
            self._beats.cancel()
        self.pool.close()
        if self._own_zk:
            await asyncio.to_thread(self._stop_zk)

    def _stop_zk(self) -> None:
        self.zk.stop()
        self.zk.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- metadata ---------------------------------------------------------------

    def live_nodes(self) -> dict[str, NodeInfo]:
        return dict(self._nodes)

    def _cache(self, meta: RegionMeta, version: int) -> None:
        old = self._regions.get(meta.name)
        if old is None or old[1] <= version:
            self._regions[meta.name] = (meta, version)

    def _watch_region(self, name: str) -> None:
        if name in self._watched:
            return
        self._watched.add(name)

        def changed(data: bytes | None, stat: Any) -> bool | None:
            if data is None:
                self._regions.pop(name, None)
                self._watched.discard(name)
                return False
            try:
                self._cache(RegionMeta.from_json(data), stat.version)
            except EcmemError:
                log.exception("damaged metadata of region %s", name)
            return None

        self.zk.DataWatch(self.meta.paths.region(name), changed)

    def forget(self, *names: str) -> None:
        """Drop cached metadata of regions renamed or removed behind the cache's back."""
        for name in names:
            self._regions.pop(name, None)

    def cached_meta(self, name: str) -> RegionMeta | None:
        """The region's metadata if this client holds it (kept fresh by a watch)."""
        cached = self._regions.get(name)
        return cached[0] if cached is not None else None

    async def _region(self, name: str, *, fresh: bool = False) -> RegionMeta:
        validate_name(name)
        cached = self._regions.get(name)
        if cached is not None and not fresh:
            return cached[0]
        meta, version = await self._zk(self.meta.get_region, name)
        self._cache(meta, version)
        await self._zk(self._watch_region, name)
        return meta

    async def _update(
        self, name: str, change: Callable[[RegionMeta], RegionMeta | None]
    ) -> RegionMeta:
        def run() -> tuple[RegionMeta, int]:
            new = self.meta.update_region(name, change)
            _, stat = self.zk.get(self.meta.paths.region(name))
            return new, stat.version

        meta, version = await self._zk(run)
        self._cache(meta, version)
        return meta

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._region_locks.get(name)
        if lock is None:
            lock = self._region_locks[name] = asyncio.Lock()
        return lock

    def view(self, meta: RegionMeta) -> RegionView:
        cached = self._views.get(meta.name)
        if cached is not None and cached[0] is meta:
            return cached[1]
        view = self.make_view(meta)
        self._views[meta.name] = (meta, view)
        return view

    def make_view(self, meta: RegionMeta) -> RegionView:
        return RegionView(
            meta.name,
            meta.id,
            Layout.of(meta.policy, meta.chunk, meta.slab_stripes),
            [list(slab) for slab in meta.slabs],
            meta.floors,
            set(meta.partial),
            meta.min_durable,
            meta.written,
        )

    def _placements(self, meta: RegionMeta, slabs: int) -> list[list[tuple[str, str]]]:
        """Placements for slabs ``len(meta.slabs)`` .. ``slabs - 1``."""
        layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
        live = self.meta.live_nodes()
        draining = set(self.meta.draining())
        cands = [
            Candidate(n.id, n.failure_domain or n.id, n.free)
            for n in live.values()
            if n.id not in draining
        ]
        first = len(meta.slabs)
        rng = random.Random(f"{meta.id}/{first}")
        ids = place_slabs(
            cands, slabs - first, layout.policy.width, layout.slab_fragment_bytes, rng
        )
        return [[(i, live[i].incarnation) for i in slab] for slab in ids]

    # -- regions ----------------------------------------------------------------

    async def create_region(
        self,
        name: str,
        size: int | str = 0,
        policy: str = DEFAULT_POLICY,
        *,
        mode: int = 0o644,
        owner: str | None = None,
        chunk: int | None = None,
        slab_size: int | str | None = None,
        min_durable: int | None = None,
        exist_ok: bool = False,
        uid: int = -1,
        gid: int = -1,
    ) -> RegionStat:
        """Create a region. ``chunk`` (bytes per fragment per stripe) and ``slab_size``
        (bytes of the region placed together) override the measured defaults.
        ``min_durable`` is how many fragments of a stripe a write needs when nodes are
        down and no handoff node can stand in (default K+1; K+M forbids degraded writes)."""
        validate_name(name)
        nbytes = parse_size(size)
        pol = parse_policy(policy)
        if min_durable is not None and not pol.k <= min_durable <= pol.width:
            raise ConfigError(
                f"min_durable {min_durable} must be between {pol.k} (readable at all) and "
                f"{pol.width} (every fragment) for policy {pol.name}"
            )
        chunk0, _ = default_geometry(pol)
        if chunk is not None:
            chunk0 = check_chunk(chunk)
        stripe = pol.stripe_data(chunk0)
        slab_stripes = max(1, DEFAULT_SLAB // stripe)
        if slab_size is not None:
            slab = parse_size(slab_size)
            if slab < stripe or slab % stripe:
                raise ConfigError(
                    f"slab size {slab} must be a positive multiple of the stripe size {stripe}"
                )
            slab_stripes = slab // stripe
        if not 0 <= mode <= 0o7777:
            raise ConfigError(f"mode {mode:o} is not a permission mode (0 to 7777 octal)")
        now = time.time()
        meta = RegionMeta(
            name=name,
            id=uuid.uuid4().hex[:16],
            policy=pol.name,
            size=nbytes,
            chunk=chunk0,
            slab_stripes=slab_stripes,
            owner=owner if owner is not None else _whoami(),
            mode=mode,
            uid=uid,
            gid=gid,
            ctime=now,
            mtime=now,
            min_durable=min_durable or 0,
        )
        layout = Layout(pol, chunk0, slab_stripes)

        def create() -> RegionMeta:
            live = self.meta.live_nodes()
            if len(live) < pol.width:
                from .errors import NotEnoughNodesError

                raise NotEnoughNodesError(
                    f"policy {pol.name} needs {pol.width} live storage nodes on distinct hosts, "
                    f"the cluster has {len(live)}: start more nodes or choose a narrower policy"
                )
            meta.slabs = self._placements(meta, layout.slabs_for(nbytes))
            try:
                self.meta.create_region(meta)
            except EcmemError:
                if exist_ok:
                    return self.meta.get_region(name)[0]
                raise
            return meta

        created = await self._zk(create)
        log.info("created region %s (%s, %d bytes)", name, created.policy, created.size)
        return RegionStat.of(created)

    async def stat(self, name: str) -> RegionStat:
        return RegionStat.of(await self._region(name, fresh=True))

    async def exists(self, name: str) -> bool:
        try:
            await self._region(name, fresh=True)
            return True
        except RegionNotFound:
            return False

    async def list_regions(self, prefix: str = "") -> list[RegionStat]:
        metas = await self._zk(self.meta.regions, prefix)
        return [RegionStat.of(m) for m in metas]

    async def delete_region(self, name: str) -> None:
        validate_name(name)
        meta = await self._zk(self.meta.delete_region, name)
        self._regions.pop(name, None)
        if name in self._writers:
            await self.release(name)
        unreached = await self.io.delete(self.view(meta), 0, 0)
        if unreached:
            log.warning(
                "region %s removed; nodes %s were unreachable and still hold its "
                "fragments until they are scrubbed",
                name,
                ", ".join(unreached),
            )

    # -- data -------------------------------------------------------------------

    async def writer(
        self, name: str, timeout: float | None = None, *, file: bool = False
    ) -> Writer:
        """This client's writer of the region, taking the lease first if need be."""
        w = self._writers.get(name)
        if w is None:
            lock = self._epoch_locks.setdefault(name, asyncio.Lock())
            async with lock:
                w = self._writers.get(name)
                if w is None:
                    w = await self._take_over(name, timeout)
                    self._writers[name] = w
        w.check()
        if file:
            w.files += 1
        elif w.files == 0:
            w.sticky = True
        return w

    def writer_of(self, name: str) -> Writer:
        """The writer this client holds for a region (its lease taken by ``writer``)."""
        w = self._writers.get(name)
        if w is None:
            raise ClusterError(
                f"region {name!r}: this client holds no write lease on it; take it first "
                "(open for writing, pwrite, or writer())"
            )
        return w

    def holds(self, name: str) -> bool:
        """Does this client hold the region's write lease?"""
        return name in self._writers

    async def _take_over(self, name: str, timeout: float | None) -> Writer:
        await self._zk(lease.acquire, self.zk, self.meta.paths, name, self.holder, timeout)
        try:

            def bump(meta: RegionMeta) -> RegionMeta:
                meta.epoch += 1
                return meta

            meta = await self._update(name, bump)
            w = Writer(name, meta.epoch, marked=extents.minus(meta.written, meta.lost))
            lac = await self._fence(meta, w, meta.slabs)
            await self._recover(meta, w, lac)
        except BaseException:
            await self._zk(lease.release, self.zk, self.meta.paths, name)
            raise
        log.info("writing region %s at epoch %d", name, w.epoch)
        return w

    async def _fence(self, meta: RegionMeta, w: Writer, slabs: list[list[tuple[str, str]]]) -> int:
        """Make the nodes of ``slabs`` refuse writers older than ``w``; returns the newest
        commit point they know. Every write needs all of a slab's nodes, so one fenced node
        per slab keeps an old writer out."""
        answers = await self.io.broadcast(
            [n for slab in slabs for n, _ in slab if n], wire.Fence(meta.id, w.epoch)
        )
        fenced, lac = set(), 0
        for node, reply in answers.items():
            if isinstance(reply, wire.Error) and reply.code == wire.E_FENCED:
                w.fence_off(reply.message)
                w.check()
            if isinstance(reply, wire.Ok):
                fenced.add(node)
                lac = max(lac, int(reply.info.get("lac", 0)))
        view = self.make_view(meta)
        need = fence_quorum(view.layout.policy.width, view.durable_minimum())
        nodes = [[n for n, _ in slab] for slab in slabs]
        for i in unfenced_slabs(nodes, fenced, need):
            raise ClusterError(
                f"region {meta.name!r}: cannot fence slab {i}: {need} of its nodes must "
                f"answer, only {sorted(n for n in nodes[i] if n in fenced)} did; bring "
                "nodes back (ecmem nodes) and reopen"
            )
        return lac

    async def _recover(self, meta: RegionMeta, w: Writer, lac: int) -> None:
        """Close what the previous writer left: keep, in order, each staged write whose
        every stripe can be read back (k fragments), up to the first that cannot; drop
        the rest. So the region holds a prefix of the writes, and every write that was
        acknowledged (committed, or staged in full) is in it."""
        view = self.make_view(meta)
        k = view.layout.policy.k
        answers = await self.io.broadcast(
            [n for slab in meta.slabs for n, _ in slab], wire.List(meta.id, 1)
        )
        staged = [
            Staged(version, stripe, index, (first, last, end))
            for node, reply in answers.items()
            if isinstance(reply, wire.Listing)
            for _, stripe, index, version, _, first, last, end in reply.entries
            # Only fragments of the slab's placement count (a stray's are the rebuilder's).
            if view.layout.slab_of(stripe) < len(meta.slabs)
            and view.placement(stripe)[index][0] == node
        ]
        out = choose_kept(lac, meta.size, staged, k)
        writes, kept, size, dropped = out.writes, out.kept, out.size, out.dropped
        if writes:
            log.info(
                "region %s: recovered %d staged writes of the previous writer, dropped %d",
                meta.name,
                len(writes) - len(dropped),
                len(dropped),
            )
        w.base = kept
        # What is kept is committed below: its stripes are recorded as written first, and
        # stripes recorded only by writes dropped here are holes again.
        wrote = out.wrote()
        if size > meta.size or meta.pending or not extents.covers_all(w.marked, wrote):

            def settle(m: RegionMeta) -> RegionMeta:
                self._check_epoch(w, m)
                m.size = max(m.size, size)
                m.written = settle_written(m.written, m.pending, set(dropped), wrote)
                m.lost = extents.minus(m.lost, wrote)
                m.pending = []
                return m

            settled = await self._update(meta.name, settle)
            w.marked = extents.minus(settled.written, settled.lost)
        start = w.epoch << wire.SEQ_BITS
        await self._commit_round(meta, w, start)

    async def _commit_round(self, meta: RegionMeta, w: Writer, upto: int) -> None:
        """Tell every node of the region that all writes up to ``upto`` are committed.
        A node that cannot be told is taken out of the region's placements (until it is
        rebuilt): it might hold a staged copy it would never learn was committed."""
        nodes = [n for slab in meta.slabs for n, _ in slab if n]
        answers = await self.io.broadcast(nodes, wire.Commit(meta.id, upto, w.base))
        failed = {n: r for n, r in answers.items() if not isinstance(r, wire.Ok)}
        for reply in failed.values():
            if isinstance(reply, wire.Error) and reply.code == wire.E_FENCED:
                w.fence_off(reply.message)
                w.check()
        if failed:
            tolerates = Layout.of(meta.policy, meta.chunk, meta.slab_stripes).policy.tolerates
            detail = "; ".join(f"{n}: {r}" for n, r in sorted(failed.items(), key=lambda x: x[0]))
            if len(failed) > tolerates:
                raise NodeUnavailable(
                    f"region {meta.name!r}: could not commit writes up to version {upto} on "
                    f"{len(failed)} nodes ({detail}); they are staged in full and the next "
                    "writer keeps them"
                )
            await self._vacate(meta.name, w, set(failed))
            log.warning(
                "region %s: nodes %s missed a commit and left its placements until rebuilt (%s)",
                meta.name,
                ", ".join(sorted(failed)),
                detail,
            )
        w.committed_upto(upto)

    async def _vacate(self, name: str, w: Writer, nodes: set[str]) -> RegionMeta:
        def change(m: RegionMeta) -> RegionMeta | None:
            self._check_epoch(w, m)
            hit = [
                (s, i)
                for s, slab in enumerate(m.slabs)
                for i, (n, _) in enumerate(slab)
                if n in nodes
            ]
            for s, i in hit:
                m.slabs[s][i] = ("", "")
            m.partial = [p for p in m.partial if p not in hit]
            return m if hit else None

        return await self._update(name, change)

    async def _replace(self, view: RegionView, stripe: int, index: int, why: str) -> bool:
        """Give a fragment whose holder failed a write to a handoff node (or leave the slot
        vacant if none qualifies); updates ZooKeeper, then ``view``."""
        name = view.name
        w = self._writers.get(name)
        if w is None:
            return False
        slab = view.layout.slab_of(stripe)
        failed = view.slabs[slab][index][0]
        async with self._placement_locks.setdefault(name, asyncio.Lock()):
            meta = await self._region(name)
            current = meta.slabs[slab][index]
            if current[0] == failed:
                meta = await self._zk(self._handoff, meta, w, slab, index, failed)
                current = meta.slabs[slab][index]
                if current[0]:
                    await self._fence(meta, w, [meta.slabs[slab]])
                log.warning(
                    "region %s slab %d fragment %d: %s failed (%s); %s",
                    name,
                    slab,
                    index,
                    f"node {failed}" if failed else "a vacant slot",
                    why,
                    f"handed off to {current[0]}" if current[0] else "no handoff node, left vacant",
                )
            view.slabs[slab][index] = current
            view.partial = set(meta.partial)
            return bool(current[0])

    def _handoff(
        self, meta: RegionMeta, w: Writer, slab: int, index: int, failed: str
    ) -> RegionMeta:
        layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
        live = self.meta.live_nodes()
        members = {n for n, _ in meta.slabs[slab]}
        draining = set(self.meta.draining())
        cands = [
            Candidate(n.id, n.failure_domain or n.id, n.free)
            for n in live.values()
            if not self.pool.is_suspect(n.id) and n.id not in draining
        ]
        domains = [live[n].failure_domain or n for n in members if n in live and n != failed]
        try:
            pick = replacement(cands, members, domains, layout.slab_fragment_bytes, random.Random())
            holder = (pick, live[pick].incarnation)
        except NotEnoughNodesError:
            holder = ("", "")

        def change(m: RegionMeta) -> RegionMeta | None:
            self._check_epoch(w, m)
            if m.slabs[slab][index][0] != failed:
                return None
            m.slabs[slab][index] = holder
            m.partial = [p for p in m.partial if p != (slab, index)]
            if holder[0]:
                m.partial.append((slab, index))
            return m

        new = self.meta.update_region(meta.name, change)
        _, stat = self.zk.get(self.meta.paths.region(meta.name))
        self._cache(new, stat.version)
        return new

    async def commit(self, name: str, upto: int | None = None) -> None:
        """Commit this client's writes of a region, once all of them up to ``upto`` (default:
        all begun so far) are staged. Returns when every node knows."""
        w = self._writers.get(name)
        if w is None:
            return
        target = w.version if upto is None else upto
        await w.wait_ready(target)
        if w.committed >= target:
            return
        meta = await self._region(name)
        await self._commit_round(meta, w, w.ready())

    async def writer_done(self, name: str) -> None:
        """A region file opened for writing was closed."""
        w = self._writers.get(name)
        if w is None:
            return
        w.files = max(0, w.files - 1)
        if w.files == 0 and not w.sticky:
            await self.release(name)

    async def accept_loss(self, name: str) -> extents.Ranges:
        """Accept that a region's lost stripes are gone for good (as an operator's
        mark-lost-ok): what is left of them is deleted and they read as zeros from now
        on. Takes the region's write lease for the change; returns the stripes accepted."""
        async with self._lock(name):
            held = name in self._writers
            w = await self.writer(name)
            try:
                meta = await self._region(name, fresh=True)
                if not meta.lost:
                    return []
                accepted = meta.lost
                nodes = [n for slab in meta.slabs for n, _ in slab if n] + list(self._nodes)
                for first, end in accepted:
                    await self.io.broadcast(nodes, wire.Delete(meta.id, first, w.epoch, end))

                def accept(m: RegionMeta) -> RegionMeta:
                    self._check_epoch(w, m)
                    m.written = extents.minus(m.written, accepted)
                    m.lost = extents.minus(m.lost, accepted)
                    return m

                new = await self._update(name, accept)
                w.marked = extents.minus(new.written, new.lost)
                log.warning(
                    "region %s: the loss of stripes %s was accepted; they read as zeros",
                    name,
                    extents.describe(accepted),
                )
                return accepted
            finally:
                if not held:
                    await self.release(name)

    async def release(self, name: str) -> None:
        """Give up the write lease of a region (taken by open for writing, pwrite or truncate)."""
        w = self._writers.pop(name, None)
        if w is not None:
            await self._zk(lease.release, self.zk, self.meta.paths, name)

    def _check_epoch(self, w: Writer, m: RegionMeta) -> None:
        if m.epoch != w.epoch and not UNSAFE_NO_FENCING:
            w.fence_off(f"a writer of epoch {m.epoch} took the region over")
            w.check()

    async def ensure_slabs(self, name: str, end: int, w: Writer) -> RegionMeta:
        meta = await self._region(name)
        layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
        want = layout.slabs_for(end)
        if want <= len(meta.slabs):
            return meta
        first = len(meta.slabs)

        def grow(m: RegionMeta) -> RegionMeta | None:
            self._check_epoch(w, m)
            if want <= len(m.slabs):
                return None
            m.slabs = m.slabs + self._placements(m, want)
            return m

        new = await self._update(name, grow)
        await self._fence(new, w, new.slabs[first:])
        return new

    async def publish_size(self, name: str, size: int, *, exact: bool = False) -> RegionMeta:
        """Record a new size (grow only, unless ``exact``) and the modification time."""
        w = await self.writer(name)

        def change(m: RegionMeta) -> RegionMeta:
            self._check_epoch(w, m)
            m.size = size if exact else max(m.size, size)
            m.mtime = time.time()
            return m

        return await self._update(name, change)

    async def write_at(
        self, name: str, offset: int, data: bytes | bytearray | memoryview, size: int
    ) -> None:
        """Stage ``data`` at ``offset`` without publishing a new size or committing it;
        ``size`` is the writer's view of the region's size (bytes past it are unset)."""
        if offset < 0:
            raise ConfigError(f"offset {offset} is negative")
        n = memoryview(data).nbytes
        if n == 0:
            return
        writer = await self.writer(name)
        meta = await self.ensure_slabs(name, offset + n, writer)
        view = self.view(meta)
        sd = view.layout.stripe_data
        tail_end = -(-size // sd) * sd
        if offset + n > size and offset >= tail_end > size:
            # The stripe holding the old end may keep bytes of a longer past beyond it.
            await self._stage(view, writer, size, bytes(tail_end - size), size)
        await self._stage(view, writer, offset, data, size)

    async def _stage(
        self,
        view: RegionView,
        w: Writer,
        offset: int,
        data: bytes | bytearray | memoryview,
        size: int,
    ) -> None:
        n = memoryview(data).nbytes
        sd = view.layout.stripe_data
        first, last = offset // sd, (offset + n - 1) // sd
        stamp = w.begin(first, last, offset + n)
        try:
            await self.io.write(view, offset, data, size, stamp)
            # Before the commit point may pass this write: once committed, a stripe that
            # no node holds must read as lost, never as a hole.
            await self._mark_written(view.name, w, first, last + 1, stamp.version)
        except BaseException as exc:
            w.finish(stamp, False, str(exc))
            raise
        w.finish(stamp, True)

    async def _mark_written(self, name: str, w: Writer, first: int, end: int, version: int) -> None:
        """Record stripes [first, end) of write ``version`` as written (and no longer lost)
        in the region's record; writes staged meanwhile are recorded in the same update."""
        if extents.covers(w.marked, first, end):
            return
        w.unmarked.append((first, end, version))
        async with w.marking:
            if extents.covers(w.marked, first, end):
                return
            todo, w.unmarked = w.unmarked, []

            def mark(m: RegionMeta) -> RegionMeta:
                self._check_epoch(w, m)
                m.written, m.lost, m.pending = record_writes(
                    m.written, m.lost, m.pending, todo, w.ready()
                )
                return m

            try:
                meta = await self._update(name, mark)
            except BaseException:
                w.unmarked = todo + w.unmarked
                raise
            w.marked = extents.minus(meta.written, meta.lost)

    async def read_at(self, name: str, offset: int, length: int, size: int | None = None) -> bytes:
        if offset < 0 or length < 0:
            raise ConfigError(f"offset {offset} and length {length} must not be negative")
        meta = await self._region(name)
        limit = meta.size if size is None else size
        length = max(0, min(length, limit - offset))
        if length == 0:
            return b""
        try:
            return bytes(await self.io.read(self.view(meta), offset, length))
        except DataLostError as exc:
            await self._report_loss(name, exc)
            raise

    async def read_into(
        self, name: str, offset: int, out: memoryview, size: int | None = None
    ) -> int:
        """Fill ``out`` from ``offset``; returns how many bytes (short at the end)."""
        if offset < 0:
            raise ConfigError(f"offset {offset} must not be negative")
        meta = await self._region(name)
        limit = meta.size if size is None else size
        n = max(0, min(len(out), limit - offset))
        if n:
            try:
                await self.io.read_into(self.view(meta), offset, out[:n])
            except DataLostError as exc:
                await self._report_loss(name, exc)
                raise
        return n

    async def _report_loss(self, name: str, exc: DataLostError) -> None:
        """Tell the coordinator a region has lost data, so that it checks the region and
        records the loss for ``ecmem status``. Best effort: the reader has its error."""
        why = f"slab {exc.slab} stripe {exc.stripe}"
        data = json.dumps({"region": name, "why": why, "when": time.time()}).encode()

        def file() -> None:
            with contextlib.suppress(NodeExistsError):
                self.zk.create(self.meta.paths.check(name), data, makepath=True)

        try:
            await self._zk(file)
        except (KazooException, EcmemError) as err:
            log.warning("region %s: could not report its lost data (%s): %s", name, why, err)

    async def pread(self, name: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset``; short only at the region's end."""
        return await self.read_at(name, offset, length)

    async def pwrite(self, name: str, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Write ``data`` at ``offset``, growing the region if it ends past its size.
        Returns once the write is committed: durable by the region's policy, and seen by
        every reader that starts after."""
        n = memoryview(data).nbytes
        async with self._lock(name):
            meta = await self._region(name)
            await self.write_at(name, offset, data, meta.size)
            w = await self.writer(name)
            version = w.version
        await w.wait_ready(version)
        if offset + n > meta.size:
            await self.publish_size(name, offset + n)
        await self.commit(name, version)
        return n

    async def truncate(self, name: str, size: int) -> None:
        if size < 0:
            raise ConfigError(f"size {size} is negative")
        async with self._lock(name):
            meta = await self._region(name, fresh=True)
            await self._resize(meta, size)

    async def _resize(self, meta: RegionMeta, size: int) -> None:
        name = meta.name
        layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
        sd = layout.stripe_data
        writer = await self.writer(name)
        if size > meta.size:
            # Bytes past the old end may hold leftovers of an earlier, longer life.
            tail_end = min(size, -(-meta.size // sd) * sd)
            if tail_end > meta.size:
                await self.write_at(name, meta.size, bytes(tail_end - meta.size), meta.size)
            await self.ensure_slabs(name, size, writer)
            await self.publish_size(name, size, exact=True)
            await self.commit(name)
            return
        if size == meta.size:
            return
        # Writes before the truncation are committed first, so that no recovery can
        # bring back what it cut off.
        await self.commit(name)
        first_gone = layout.stripes_for(size)
        floor = writer.upcoming()

        def shrink(m: RegionMeta) -> RegionMeta:
            self._check_epoch(writer, m)
            m.size = size
            m.mtime = time.time()
            m.floors = [(s, v) for s, v in m.floors if s < first_gone] + [(first_gone, floor)]
            m.written = extents.remove(m.written, first_gone, 1 << 62)
            m.lost = extents.remove(m.lost, first_gone, 1 << 62)
            m.pending = [(f, min(e, first_gone), v) for f, e, v in m.pending if f < first_gone]
            return m

        new = await self._update(name, shrink)
        writer.marked = extents.remove(writer.marked, first_gone, 1 << 62)
        unreached = await self.io.delete(self.view(new), first_gone, writer.epoch)
        if unreached:
            log.info(
                "region %s truncated; nodes %s keep stale stripes past the end, which "
                "read as unset",
                name,
                ", ".join(unreached),
            )

    def open(
        self,
        name: str,
        mode: str = "rb",
        *,
        policy: str | None = None,
        size: int | str = 0,
        timeout: float | None = None,
    ) -> Opening:
        """Open a region as a binary file object: ``f = await cl.open(...)``, or
        ``async with cl.open(...) as f:`` which closes it at the end.

        Modes: ``rb``, ``r+b``, ``wb``, ``w+b``, ``ab``, ``a+b``, ``xb``, ``x+b``; those that
        create a region use ``policy`` (default ec:4+2) and ``size``. Opening for writing
        takes the region's write lease: if another client holds it, RegionBusy, unless
        ``timeout`` gives seconds to wait for it.
        """
        return Opening(self.open_file(name, mode, policy=policy, size=size, timeout=timeout))

    async def open_file(
        self,
        name: str,
        mode: str,
        *,
        policy: str | None,
        size: int | str,
        timeout: float | None,
    ) -> AsyncRegionFile:
        flags = parse_mode(mode)
        validate_name(name)
        if flags.create:
            try:
                await self.create_region(name, size, policy or DEFAULT_POLICY)
            except EcmemError as exc:
                from .errors import RegionExists

                if not isinstance(exc, RegionExists) or flags.exclusive:
                    raise
        meta = await self._region(name, fresh=True)
        if policy is not None and not flags.create:
            want = parse_policy(policy).name
            if want != meta.policy:
                raise ConfigError(
                    f"region {name!r} has policy {meta.policy}, not {want}: open it without "
                    "a policy, or remove and recreate it"
                )
        if flags.write:
            await self.writer(name, timeout, file=True)
        stripe = Layout.of(meta.policy, meta.chunk, meta.slab_stripes).stripe_data
        f = AsyncRegionFile(self, name, flags, meta.size, stripe)
        if flags.truncate and meta.size:
            await self.truncate(name, 0)
            f._size = 0
        if flags.append:
            f._pos = f._size
        return f

    async def region_meta(self, name: str) -> RegionMeta:
        return await self._region(name, fresh=True)


class Opening:
    """What :meth:`AsyncClient.open` returns: awaitable (``f = await cl.open(...)``) and an
    async context manager (``async with cl.open(...) as f:``, closing ``f`` at the end), as
    ``aiofiles.open`` is. Use it one way, once."""

    def __init__(self, opening: Coroutine[Any, Any, AsyncRegionFile]) -> None:
        self._opening = opening
        self._file: AsyncRegionFile | None = None

    def __await__(self) -> Generator[Any, None, AsyncRegionFile]:
        return self._opening.__await__()

    async def __aenter__(self) -> AsyncRegionFile:
        self._file = await self._opening
        return self._file

    async def __aexit__(self, *exc: object) -> None:
        if self._file is not None:
            await self._file.close()


async def connect(
    zk: str | None = None,
    *,
    cluster: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    timeout: float = 10.0,
    session_timeout: float = 10.0,
) -> AsyncClient:
    """Connect to a cluster: ``zk`` hosts, else ``ECMEM_ZK``, else the local one in ``./.ecmem``.

    ``session_timeout`` is how long ZooKeeper keeps this client's write leases after it
    stops hearing from it (crash, pause, partition).
    """
    tune_malloc()
    target = resolve(zk, cluster, state_dir)
    try:
        zkc = await asyncio.to_thread(connect_zk, target.zk, timeout, session_timeout)
    except CoordinationError as exc:
        why = str(exc.__cause__ or "no answer") or type(exc.__cause__).__name__
        raise CoordinationError(unreachable(target, state_dir, why, timeout)) from exc
    client = AsyncClient(zkc, target.cluster)
    try:
        await client.start()
    except BaseException:
        await client.close()
        raise
    return client


def _whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
