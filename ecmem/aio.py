"""The asyncio client: ``client = await ecmem.aio.connect()``.

ZooKeeper is used on create, open, stat, growth into a new slab, flush and
close; reads and writes go straight to the storage nodes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException

from ecmem.meta.catalog import MetadataStore, connect_zk
from ecmem.meta.model import NodeInfo, Placement, RegionMeta

from . import catchup, extents, folding, pagelog, patience, sizing
from . import writer as writing
from .conn import ConnectionPool
from .errors import (
    ClosedError,
    ClusterError,
    ConfigError,
    CoordinationError,
    EcmemError,
    RegionExists,
    RegionNotFound,
)
from .heartbeat import Beater
from .layout import Layout
from .members import Members
from .memtune import tune_malloc
from .meta.create import new_region
from .meta.listing import list_stats
from .names import validate_name
from .policy import parse_policy
from .regionfile import AsyncRegionFile, Opening, parse_mode
from .regions import RegionCache, lock_for, make_view
from .stat import RegionStat
from .stripes import RegionView
from .target import resolve, unreachable
from .writepath import StripeIO
from .writer import WriterSession
from .writers import Ticket

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_POLICY = "ec:4+2"


class AsyncClient:
    """A connection to one ecmem cluster. Create with :func:`connect`."""

    def __init__(self, zk: KazooClient, cluster: str, *, own_zk: bool = True) -> None:
        self.zk = zk
        self.cluster = cluster
        self.meta = MetadataStore(zk, cluster)
        self._own_zk = own_zk
        self.members = Members(zk, self.meta)
        self.pool = ConnectionPool(self.members.address, self.members.addresses)
        self.metrics = self.pool.metrics  # what went wrong, as Prometheus counters
        self.io = StripeIO(self.pool)
        self.regions = RegionCache(zk, self.meta, self.call)
        self._writers: dict[str, WriterSession] = {}
        self.holder = {
            "holder": f"{socket.gethostname()}:{os.getpid()}",
            "pid": os.getpid(),
            "client": uuid.uuid4().hex[:12],
        }
        self._region_locks: dict[str, asyncio.Lock] = {}
        self._epoch_locks: dict[str, asyncio.Lock] = {}
        self.closed = False
        self._beats: Beater | None = None
        # Seconds a read waits out a stripe short of fragments (ecmem/patience.py).
        self.read_patience = patience.PATIENCE

    # -- set-up -----------------------------------------------------------------

    async def start(self) -> None:
        await self.call(self.meta.ensure)
        await self.call(self.members.watch)
        self.zk.add_listener(self._on_zk_state)
        on_change = self.pool.heartbeats(asyncio.get_running_loop())
        self._beats = Beater(self.members.addresses, on_change).start()

    def _on_zk_state(self, state: str) -> None:
        if state == KazooState.LOST and not writing.UNSAFE_NO_FENCING:
            # Our leases went with the session: someone else may be writing by now.
            for w in list(self._writers.values()):
                w.fence_off("the ZooKeeper session, and with it the write lease, expired")

    def address(self, node_id: str) -> str | None:
        return self.members.address(node_id)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking ZooKeeper call off the event loop."""
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
            self._beats.close()
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
        return self.members.live()

    def forget(self, *names: str) -> None:
        """Drop cached metadata of regions renamed or removed behind the cache's back."""
        self.regions.forget(*names)

    def cached_meta(self, name: str) -> RegionMeta | None:
        """The region's metadata if this client holds it (kept fresh by a watch)."""
        return self.regions.cached(name)

    def _lock(self, name: str) -> asyncio.Lock:
        return lock_for(self._region_locks, name)

    def view(self, meta: RegionMeta) -> RegionView:
        return self.regions.view(meta)

    make_view = staticmethod(make_view)  # a view of ``meta`` as given, uncached

    def placements(self, meta: RegionMeta, slabs: Iterable[int]) -> dict[int, Placement]:
        """Placements for the unplaced slabs among ``slabs``."""
        return self.members.place(meta, slabs)

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
        meta = new_region(
            name,
            size,
            policy,
            mode=mode,
            owner=owner,
            chunk=chunk,
            slab_size=slab_size,
            min_durable=min_durable,
            uid=uid,
            gid=gid,
        )
        created = await self.call(self.members.create, meta, exist_ok)
        log.info("created region %s (%s, %d bytes)", name, created.policy, created.size)
        return RegionStat.of(created)

    async def stat(self, name: str) -> RegionStat:
        return RegionStat.of(await self.regions.get(name, fresh=True))

    async def exists(self, name: str) -> bool:
        try:
            await self.regions.get(name, fresh=True)
            return True
        except RegionNotFound:
            return False

    async def list_regions(self, prefix: str = "") -> list[RegionStat]:
        stats: list[RegionStat] = await self.call(list_stats, self.meta, prefix)
        return stats

    async def delete_region(self, name: str) -> None:
        validate_name(name)
        meta = await self.call(self.meta.delete_region, name)
        self.regions.forget(name)
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
    ) -> WriterSession:
        """This client's writer of the region, taking the lease first if need be."""
        w = self._writers.get(name)
        if w is None:
            async with lock_for(self._epoch_locks, name):
                w = self._writers.get(name)
                if w is None:
                    w = await WriterSession.take_over(self, name, timeout)
                    self._writers[name] = w
        w.check()
        if file:
            w.files += 1
        elif w.files == 0:
            w.sticky = True
        return w

    def writer_of(self, name: str) -> WriterSession:
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

    async def commit(self, name: str, upto: int | None = None) -> None:
        """Commit this client's writes of a region, once all of them up to ``upto`` (default:
        all begun so far) are staged. Returns when every node knows."""
        w = self._writers.get(name)
        if w is not None:
            await w.commit(upto)
            await self._fold(name, w)

    async def _fold(self, name: str, w: WriterSession) -> None:
        """Fold the stripes due; catch handed-off slots up in the background."""
        if folding.due(w):
            await folding.fold_due(w, self._lock(name), lambda: self.regions.get(name))
        catchup.start(w, self._lock(name), lambda: self.regions.get(name))

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
                return await sizing.accept_loss(w)
            finally:
                if not held:
                    await self.release(name)

    async def release(self, name: str) -> None:
        """Give up the write lease of a region (taken by open for writing, pwrite or truncate)."""
        w = self._writers.pop(name, None)
        if w is not None:
            await w.release()

    async def publish_size(self, name: str, size: int, *, exact: bool = False) -> RegionMeta:
        """Record a new size (grow only, unless ``exact``) and the modification time."""
        w = await self.writer(name)
        return await w.publish_size(size, exact=exact)

    async def write_at(
        self, name: str, offset: int, data: bytes | bytearray | memoryview, size: int
    ) -> None:
        """Stage ``data`` at ``offset`` without publishing a new size or committing it;
        ``size`` is the writer's view of the region's size (bytes past it are unset)."""
        if offset < 0:
            raise ConfigError(f"offset {offset} is negative")
        if memoryview(data).nbytes == 0:
            return
        w = await self.writer(name)
        await w.write_at(offset, data, size)
        if w.patched.total >= pagelog.UNFOLDED_MAX:  # a region file's patches: backpressure
            await self._fold(name, w)

    async def read_at(self, name: str, offset: int, length: int, size: int | None = None) -> bytes:
        if length < 0:
            raise ConfigError(f"length {length} must not be negative")
        meta = await self.regions.get(name)
        out = bytearray(max(0, min(length, (meta.size if size is None else size) - offset)))
        del out[await self.read_into(name, offset, memoryview(out), size) :]
        return bytes(out)

    async def read_into(
        self, name: str, offset: int, out: memoryview, size: int | None = None
    ) -> int:
        """Fill ``out`` from ``offset``; returns how many bytes (short at the end)."""
        if offset < 0:
            raise ConfigError(f"offset {offset} must not be negative")
        return await patience.read_into(self, name, offset, out, size)

    async def pread(self, name: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset``; short only at the region's end."""
        return await self.read_at(name, offset, length)

    async def pwrite(self, name: str, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Write ``data`` at ``offset``, growing the region if it ends past its size.
        Returns once the write is committed: durable by the region's policy, and seen by
        every reader that starts after."""
        return await self.pwritev(name, [(offset, data)])

    async def pwritev(
        self, name: str, writes: Iterable[tuple[int, bytes | bytearray | memoryview]]
    ) -> int:
        """Write each (offset, bytes) of ``writes`` (in that order where they overlap),
        growing the region if one ends past its size. Returns the bytes written once all
        are committed, together: concurrent callers share commit rounds too."""
        items = [(off, m) for off, d in writes if (m := memoryview(d).cast("B")).nbytes]
        if any(off < 0 for off, _ in items):
            raise ConfigError(f"offsets must not be negative: {[o for o, _ in items if o < 0]}")
        tickets: list[tuple[Ticket, int, memoryview]] = []
        version = 0
        async with self._lock(name):
            meta = await self.regions.get(name)
            w = await self.writer(name)
            end = meta.size
            if all(off + d.nbytes <= meta.size for off, d in items):
                for off, d in items:  # a slab that cannot be placed fails before a version
                    meta = await w.ensure_slabs(off, off + d.nbytes)
                # Overwrites: they queue by stripe here and stage side by side below.
                tickets = [(w.enqueue(meta, off, d.nbytes), off, d) for off, d in items]
            else:
                for off, d in items:
                    version = await w.write_at(off, d, end)
                    end = max(end, off + d.nbytes)
        if tickets:
            done = await asyncio.gather(*(w.overwrite(*t, meta.size) for t in tickets))
            version = max(done, default=w.version)
        else:
            await w.wait_ready(version)
            await self.publish_size(name, end)
        await w.commit(version)
        await self._fold(name, w)
        return sum(d.nbytes for _, d in items)

    async def truncate(self, name: str, size: int) -> None:
        if size < 0:
            raise ConfigError(f"size {size} is negative")
        async with self._lock(name):
            meta = await self.regions.get(name, fresh=True)
            await self._resize(meta, size)

    async def _resize(self, meta: RegionMeta, size: int) -> None:
        w = await self.writer(meta.name)
        await sizing.resize(w, meta, size)

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
            except RegionExists:
                if flags.exclusive:
                    raise
        meta = await self.regions.get(name, fresh=True)
        if policy is not None and not flags.create:
            want = parse_policy(policy).name
            if want != meta.policy:
                raise ConfigError(
                    f"region {name!r} has policy {meta.policy}, not {want}: open it without "
                    "a policy, or remove and recreate it"
                )
        if flags.write:
            await self.writer(name, timeout, file=True)
            meta = await self.regions.get(name, fresh=True)  # as its recovery left it
        stripe = Layout.of(meta.policy, meta.chunk, meta.slab_stripes).stripe_data
        f = AsyncRegionFile(self, name, flags, meta.size, stripe)
        if flags.truncate and meta.size:
            await self.truncate(name, 0)
            f._size = 0
        if flags.append:
            f._pos = f._size
        return f

    async def region_meta(self, name: str) -> RegionMeta:
        return await self.regions.get(name, fresh=True)


async def connect(
    zk: str | None = None,
    *,
    cluster: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    timeout: float = 10.0,
    session_timeout: float = 10.0,
    read_patience: float = patience.PATIENCE,
) -> AsyncClient:
    """Connect to a cluster: ``zk`` hosts, else ``ECMEM_ZK``, else the local one in ``./.ecmem``.

    ``session_timeout`` is how long ZooKeeper keeps this client's write leases after it
    stops hearing from it (crash, pause, partition); ``read_patience`` how long a read
    waits for a stripe short of fragments before it reports it unavailable.
    """
    tune_malloc()
    target = resolve(zk, cluster, state_dir)
    try:
        zkc = await asyncio.to_thread(connect_zk, target.zk, timeout, session_timeout)
    except CoordinationError as exc:
        why = str(exc.__cause__ or "no answer") or type(exc.__cause__).__name__
        raise CoordinationError(unreachable(target, state_dir, why, timeout)) from exc
    client = AsyncClient(zkc, target.cluster)
    client.read_patience = read_patience
    try:
        await client.start()
    except BaseException:
        await client.close()
        raise
    return client
