"""The leader's side of region listing pages (see ``ecmem.meta.listing``): the pages of
buckets whose regions changed are written again after each health pass."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable

from ecmem.meta.catalog import MetadataStore
from ecmem.meta.listing import encode_page, pages_root
from ecmem.meta.model import RegionMeta
from ecmem.meta.paths import BUCKETS, bucket_of
from ecmem.meta.records import Records
from ecmem.names import encode_name
from ecmem.stat import RegionStat

log = logging.getLogger(__name__)

PAGE_LIMIT = 1000 * 1024  # ZooKeeper refuses larger; such a page is left to the records
REFRESH = 5.0  # the stamp readers judge freshness by


class Pages:
    def __init__(self, md: MetadataStore, clock: Callable[[], float] = time.time) -> None:
        self.records = Records(md.zk, md.paths)
        self.root = pages_root(md)
        self.clock = clock
        self._rows: dict[str, dict[str, RegionStat]] = {f"{b:02x}": {} for b in range(BUCKETS)}
        self._dirty: set[str] = set(self._rows)  # all of them, the first time
        self._stamped = 0.0

    def update(self, metas: dict[str, RegionMeta], changed: Iterable[str]) -> None:
        for name in changed:
            bucket = bucket_of(encode_name(name))
            meta = metas.get(name)
            if meta is None:
                self._rows[bucket].pop(name, None)
            else:
                self._rows[bucket][name] = RegionStat.of(meta)
            self._dirty.add(bucket)

    def publish(self) -> int:
        """Write the pages that changed, and the freshness stamp; returns pages written."""
        written = 0
        for bucket in sorted(self._dirty):
            page = encode_page(list(self._rows[bucket].values()))
            if len(page) > PAGE_LIMIT:
                log.error(
                    "region listing page %s is %d bytes, over ZooKeeper's limit: listings "
                    "read its %d regions from their records (slow)",
                    bucket,
                    len(page),
                    len(self._rows[bucket]),
                )
                self.records.put(f"{self.root}/{bucket}", b"")
            else:
                self.records.put(f"{self.root}/{bucket}", page)
            written += 1
        self._dirty.clear()
        now = self.clock()
        if written or now - self._stamped >= REFRESH:
            self.records.put(self.root, json.dumps({"updated": now}).encode())
            self._stamped = now
        return written
