"""Region records as a client last saw them, kept fresh by ZooKeeper watches.

Reads and writes consult this cache, never ZooKeeper: a region's record is fetched
once (and watched from then on), and every change this client makes goes through
a versioned set whose result replaces the cached copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError

from .errors import EcmemError
from .layout import Layout
from .meta.catalog import MetadataStore
from .meta.model import RegionMeta
from .names import validate_name
from .stripes import RegionView

log = logging.getLogger(__name__)
T = TypeVar("T")
Call = Callable[..., Awaitable[Any]]  # runs a blocking ZooKeeper call off the event loop


def make_view(meta: RegionMeta, synced: bool = False) -> RegionView:
    """What stripe I/O needs of a region's record (``synced``: read afresh)."""
    return RegionView(
        meta.name,
        meta.id,
        Layout.of(meta.policy, meta.chunk, meta.slab_stripes),
        {s: list(slab) for s, slab in meta.slabs.items()},
        meta.floors,
        meta.partial_slots(),
        meta.min_durable,
        meta.written,
        meta.pending,
        meta.paged,
        synced,
    )


class RegionCache:
    def __init__(self, zk: KazooClient, meta: MetadataStore, call: Call) -> None:
        self.zk = zk
        self.meta = meta
        self.call = call
        self._regions: dict[str, tuple[RegionMeta, int]] = {}
        self._watched: set[str] = set()
        self._views: dict[str, tuple[RegionMeta, RegionView]] = {}
        self._lock = threading.Lock()

    def put(self, meta: RegionMeta, version: int) -> None:
        """Cache a record read at ZooKeeper ``version`` (an older one never wins: a
        watch's, from kazoo's thread, may race this client's own update)."""
        with self._lock:
            old = self._regions.get(meta.name)
            if old is None or old[1] <= version:
                self._regions[meta.name] = (meta, version)

    def _watch(self, name: str) -> None:
        if name in self._watched:
            return
        self._watched.add(name)

        def changed(data: bytes | None, stat: Any) -> bool | None:
            if data is None:
                self._regions.pop(name, None)
                self._watched.discard(name)
                return False
            try:
                self.put(RegionMeta.from_json(data), stat.version)
            except EcmemError:
                log.exception("damaged metadata of region %s", name)
            return None

        self.zk.DataWatch(self.meta.paths.region(name), changed)

    def forget(self, *names: str) -> None:
        """Drop cached records of regions renamed or removed behind the cache's back."""
        for name in names:
            self._regions.pop(name, None)

    def cached(self, name: str) -> RegionMeta | None:
        cached = self._regions.get(name)
        return cached[0] if cached is not None else None

    async def get(self, name: str, *, fresh: bool = False, sync: bool = False) -> RegionMeta:
        """The record: as cached, or read ``fresh`` from ZooKeeper; with ``sync``, as
        its leader has it now (a lagging server may not have the last update yet)."""
        validate_name(name)
        cached = self._regions.get(name)
        if cached is not None and not (fresh or sync):
            return cached[0]
        if sync:
            await self.call(self.meta.sync_region, name)
        got: tuple[RegionMeta, int] = await self.call(self.meta.get_region, name)
        meta, version = got
        self.put(meta, version)
        await self.call(self._watch, name)
        return meta

    async def update(
        self, name: str, change: Callable[[RegionMeta], RegionMeta | None]
    ) -> RegionMeta:
        """Apply ``change`` with a versioned set (None: no change)."""
        start = self._copy(name)
        done: tuple[RegionMeta, int] = await self.call(
            self.meta.update_region_from, name, change, start
        )
        self.put(*done)
        return done[0]

    def update_now(
        self, name: str, change: Callable[[RegionMeta], RegionMeta | None]
    ) -> RegionMeta:
        """``update`` for a caller already off the event loop."""
        new, version = self.meta.update_region_from(name, change, self._copy(name))
        self.put(new, version)
        return new

    def _copy(self, name: str) -> tuple[RegionMeta, int] | None:
        """The cached record as a copy ``change`` may edit (the cache's own is shared)."""
        cached = self._regions.get(name)
        if cached is None:
            return None
        return RegionMeta.from_json(cached[0].to_json()), cached[1]

    async def report_loss(self, name: str, why: str) -> None:
        """Tell the coordinator a region has lost data, so that it checks the region and
        records the loss for ``ecmem status``. Best effort: the reader has its error."""
        data = json.dumps({"region": name, "why": why, "when": time.time()}).encode()

        def file() -> None:
            with contextlib.suppress(NodeExistsError):
                self.zk.create(self.meta.paths.check(name), data, makepath=True)

        try:
            await self.call(file)
        except (KazooException, EcmemError) as err:
            log.warning("region %s: could not report its lost data (%s): %s", name, why, err)

    def view(self, meta: RegionMeta) -> RegionView:
        """The stripe-I/O view of a record, made once per record object."""
        cached = self._views.get(meta.name)
        if cached is not None and cached[0] is meta:
            return cached[1]
        view = make_view(meta)
        self._views[meta.name] = (meta, view)
        return view


def lock_for(locks: dict[str, asyncio.Lock], name: str) -> asyncio.Lock:
    lock = locks.get(name)
    if lock is None:
        lock = locks[name] = asyncio.Lock()
    return lock
