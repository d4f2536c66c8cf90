"""Region listings at scale: pages the leader keeps in ZooKeeper, one per bucket, each a
compressed list of the rows ``list_regions`` returns.

Reading every record costs a round trip each (about 10,000 a second here); a page holds
a bucket's rows in one. Names always come from the buckets themselves, so a listing
never shows a removed region nor misses a new one: a row the leader has not written yet
is read from the record. Sizes and times are as of the leader's last pass (seconds).
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import astuple, fields
from typing import Any

from kazoo.exceptions import NoNodeError

from ..names import encode_name
from ..stat import RegionStat
from .catalog import FAILOVER_DEADLINE, MetadataStore
from .paths import bucket_of

# Up to this many regions, reading every record costs well under a second: exact.
EXACT_UPTO = 2000
# Pages older than this were left by a leader that stopped keeping them (they are
# stamped every few seconds).
FRESH = 15.0
FIELDS = [f.name for f in fields(RegionStat)]


def pages_root(md: MetadataStore) -> str:
    return f"{md.paths.root}/coordinator/listing"


def encode_page(stats: list[RegionStat]) -> bytes:
    rows = [list(astuple(s)) for s in sorted(stats, key=lambda s: s.name)]
    return zlib.compress(json.dumps({"fields": FIELDS, "rows": rows}).encode(), 6)


def decode_page(raw: bytes) -> dict[str, RegionStat]:
    data: dict[str, Any] = json.loads(zlib.decompress(raw))
    if data.get("fields") != FIELDS:
        raise ValueError("listing page of another format")
    return {str(row[0]): RegionStat(*row) for row in data["rows"]}


def read_pages(md: MetadataStore, buckets: set[str]) -> dict[str, RegionStat] | None:
    """The rows of the given buckets' pages; None if the leader's pages are not fresh."""
    root = pages_root(md)
    try:
        raw, _ = md.zk.get(root)
        if time.time() - float(json.loads(raw).get("updated", 0)) >= FRESH:
            return None
    except (NoNodeError, ValueError, AttributeError):
        return None
    pending = [md.zk.get_async(f"{root}/{b}") for b in sorted(buckets)]
    rows: dict[str, RegionStat] = {}
    for answer in pending:
        try:
            page, _ = answer.get(timeout=FAILOVER_DEADLINE)
            rows.update(decode_page(page))
        except (NoNodeError, ValueError, TypeError, zlib.error):
            continue  # a page missing or damaged: its rows are read from the records
    return rows


def list_stats(md: MetadataStore, prefix: str = "") -> list[RegionStat]:
    """Every region starting with ``prefix``, in name order (blocking)."""
    names = md.region_names(prefix)
    rows: dict[str, RegionStat] | None = None
    if len(names) > EXACT_UPTO:
        every = {b.rsplit("/", 1)[1] for b in md.paths.buckets}
        rows = read_pages(md, every if not prefix else {bucket_of(encode_name(n)) for n in names})
    if rows is None:
        rows = {}
    missing = [n for n in names if n not in rows]
    for name, meta in md.iter_regions(names=missing):
        rows[name] = RegionStat.of(meta)
    return [rows[n] for n in names if n in rows]
