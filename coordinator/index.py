"""Every region record, kept current by ZooKeeper watches (kazoo's TreeCache).

The leader's passes read this memory, not ZooKeeper, and learn which regions changed
since they last looked: with many regions and nothing happening, a pass costs nothing.
"""

from __future__ import annotations

import logging
import threading

from kazoo.client import KazooClient
from kazoo.recipe.cache import TreeCache, TreeEvent

from ecmem.errors import EcmemError
from ecmem.meta.model import RegionMeta
from ecmem.meta.paths import Paths
from ecmem.names import decode_name

log = logging.getLogger(__name__)


class RegionIndex:
    def __init__(self, zk: KazooClient, paths: Paths) -> None:
        self._root = paths.regions
        self._cache = TreeCache(zk, self._root)
        self._lock = threading.Lock()
        self._raw: dict[str, bytes] = {}  # arrived, not parsed yet
        self._metas: dict[str, RegionMeta] = {}
        self.damaged: dict[str, str] = {}  # records that could not be read: name -> why
        self._changed: dict[str, set[str]] = {}  # by consumer
        self.ready = threading.Event()
        self._cache.listen(self._event)

    def start(self, timeout: float = 300.0) -> bool:
        """Start watching; True once every record has been read (False: not within
        ``timeout``, and the index fills in as the reads arrive)."""
        self._cache.start()
        return self.ready.wait(timeout)

    def close(self) -> None:
        self._cache.close()

    def _name(self, path: str) -> str | None:
        """The region a record's path names; None for the root and the buckets."""
        rest = path[len(self._root) + 1 :]
        if rest.count("/") != 1:
            return None
        return decode_name(rest.split("/", 1)[1])

    def _event(self, event: TreeEvent) -> None:
        kind = event.event_type
        if kind == TreeEvent.INITIALIZED:
            self.ready.set()
            return
        if kind not in (TreeEvent.NODE_ADDED, TreeEvent.NODE_UPDATED, TreeEvent.NODE_REMOVED):
            return
        name = self._name(event.event_data.path)
        if name is None:
            return
        with self._lock:
            for changed in self._changed.values():
                changed.add(name)
            if kind == TreeEvent.NODE_REMOVED:
                self._raw.pop(name, None)
                self._metas.pop(name, None)
                self.damaged.pop(name, None)
            else:
                self._raw[name] = event.event_data.data

    def _parse(self) -> None:
        raw, self._raw = self._raw, {}
        for name, data in raw.items():
            try:
                self._metas[name] = RegionMeta.from_json(data)
                self.damaged.pop(name, None)
            except (EcmemError, ValueError, TypeError, KeyError) as exc:
                self._metas.pop(name, None)
                self.damaged[name] = str(exc)
                log.warning(  # the daemon's log handler shows it once a minute
                    "region %s: its ZooKeeper record cannot be read (%s); the region is "
                    "left out of health and rebuild until it is rewritten or removed",
                    name,
                    exc,
                )

    def damaged_now(self) -> dict[str, str]:
        """Records that cannot be read, as the watch has them now: name -> why."""
        with self._lock:
            self._parse()
            return dict(self.damaged)

    def snapshot(self) -> dict[str, RegionMeta]:
        """Every region's record as last seen (a copy: passes may keep it)."""
        with self._lock:
            self._parse()
            return dict(self._metas)

    def pending(self, consumer: str) -> bool:
        """Whether ``take_changes`` would return anything."""
        with self._lock:
            return self._changed.get(consumer) != set()

    def take_changes(self, consumer: str) -> set[str]:
        """Regions added, changed or removed since ``consumer`` last asked (every region,
        the first time)."""
        with self._lock:
            changed = self._changed.get(consumer)
            self._changed[consumer] = set()
            return changed if changed is not None else set(self._metas) | set(self._raw)
