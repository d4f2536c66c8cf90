"""The region side of health for the CLI: the leader's summary when the cluster has many
regions (reading every record would take minutes), else worked out from the records."""

from __future__ import annotations

import time
from typing import Any

from ecmem.health import (
    RegionTotals,
    damaged_records,
    holders,
    region_health,
    region_totals,
)
from ecmem.meta import listing
from ecmem.meta.catalog import MetadataStore
from ecmem.meta.model import NodeInfo
from ecmem.meta.records import Records

# The same bounds as listings': exact up to EXACT_UPTO regions; a summary older than
# FRESH was left by a leader that stopped keeping it (it is rewritten every 5 s).


def region_side(
    md: MetadataStore,
    records: Records,
    nodes: dict[str, NodeInfo],
    coordinators: list[dict[str, Any]],
) -> tuple[RegionTotals, dict[str, Any]]:
    """The totals, and where they come from ({"from": "leader", "age": s} or
    {"from": "records"})."""
    summary = records.health()
    age = time.time() - float(summary.get("updated", 0.0) or 0.0)
    leading = any(c.get("leader") for c in coordinators)
    many = int(summary.get("regions", 0) or 0) > listing.EXACT_UPTO
    if leading and many and 0 <= age < listing.FRESH:
        try:
            return RegionTotals.from_dict(summary), {"from": "leader", "age": round(age, 1)}
        except (TypeError, ValueError, KeyError):
            pass  # a damaged summary: count from the records
    metas = md.regions()
    live = {k: v for k, v in nodes.items() if v.state == "up"}
    per = [region_health(m, live) for m in metas]
    totals = region_totals(per, holders(metas))
    totals.checks += damaged_records(md.damaged)
    return totals, {"from": "records"}
