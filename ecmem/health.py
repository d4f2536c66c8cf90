"""Cluster health from a snapshot of metadata, as a pure function.

Check codes are stable: scripts may match on them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ecmem import extents
from ecmem.meta.model import NodeInfo, RegionMeta
from ecmem.policy import parse_policy

HEALTH_OK = "HEALTH_OK"
HEALTH_WARN = "HEALTH_WARN"
HEALTH_ERR = "HEALTH_ERR"
NEARFULL = 0.85
FULL = 0.95


@dataclass
class Check:
    code: str
    severity: str
    summary: str
    detail: list[str] = field(default_factory=list)


@dataclass
class RegionHealth:
    name: str
    state: str  # ok, degraded, unavailable, lost
    stripes: int
    degraded_stripes: int
    unavailable_stripes: int
    lost: dict[int, list[int]]  # slab -> fragment indexes whose node is gone
    data_lost: extents.Ranges = field(default_factory=list)  # stripes recorded lost


@dataclass
class HealthReport:
    status: str
    checks: list[Check]
    nodes_up: int
    nodes_total: int
    regions: int
    stripes: int
    degraded_stripes: int
    unavailable_stripes: int
    capacity: int
    used: int
    out: list[str] = field(default_factory=list)  # down, holding nothing
    rebuild: dict[str, Any] = field(default_factory=dict)
    lost_stripes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "checks": {
                c.code: {"severity": c.severity, "summary": c.summary, "detail": c.detail}
                for c in self.checks
            },
            "nodes": {"up": self.nodes_up, "total": self.nodes_total, "out": self.out},
            "rebuild": self.rebuild,
            "regions": self.regions,
            "stripes": {
                "total": self.stripes,
                "degraded": self.degraded_stripes,
                "unavailable": self.unavailable_stripes,
                "lost": self.lost_stripes,
            },
            "capacity": {"total": self.capacity, "used": self.used},
        }


def slab_stripe_count(meta: RegionMeta, slab: int) -> int:
    stripe_data = parse_policy(meta.policy).stripe_data(meta.chunk)
    total = -(-meta.size // stripe_data)
    return max(0, min(meta.slab_stripes, total - slab * meta.slab_stripes))


def region_health(meta: RegionMeta, live: dict[str, NodeInfo]) -> RegionHealth:
    policy = parse_policy(meta.policy)
    partial = set(meta.partial)
    lost: dict[int, list[int]] = {}
    stripes = degraded = unavailable = 0
    for slab, placement in meta.slabs.items():
        n = slab_stripe_count(meta, slab)
        stripes += n
        # A handoff holder (partial) may lack the slab's older stripes until rebuilt.
        gone = [
            idx
            for idx, (node_id, incarnation) in enumerate(placement)
            if node_id not in live
            or live[node_id].incarnation != incarnation
            or (slab, idx) in partial
        ]
        if gone:
            lost[slab] = gone
            if len(gone) > policy.tolerates:
                unavailable += n
            else:
                degraded += n
    state = "lost" if meta.lost else "unavailable" if unavailable else "degraded" if lost else "ok"
    return RegionHealth(meta.name, state, stripes, degraded, unavailable, lost, list(meta.lost))


def holders(regions: Iterable[RegionMeta]) -> set[str]:
    """The nodes that hold some fragment of some region, by the placements."""
    return {n for meta in regions for slab in meta.slabs.values() for n, _ in slab if n}


def node_state(node: NodeInfo, holding: set[str]) -> str:
    """ "up", "down", or "out": down but holding nothing any more (rebuilt elsewhere),
    which is listed but raises no warning."""
    if node.state == "up":
        return "up"
    return "down" if node.id in holding else "out"


def assess(
    nodes: dict[str, NodeInfo],
    regions: list[RegionMeta],
    rebuild: dict[str, Any] | None = None,
    drains: Iterable[str] = (),
    scrub: dict[str, Any] | None = None,
    coordinators: list[dict[str, Any]] | None = None,
) -> tuple[HealthReport, list[RegionHealth]]:
    """Health of the cluster; ``rebuild`` is the rebuilder's progress record and
    ``drains`` the nodes being drained, when known."""
    live = {k: v for k, v in nodes.items() if v.state == "up"}
    per_region = [region_health(meta, live) for meta in regions]
    totals = region_totals(per_region, holders(regions))
    return summarize(nodes, totals, rebuild, drains, scrub, coordinators), per_region


class HealthTally:
    """Each region's health kept between passes: worked out again for the regions that
    changed, and for all only when the live nodes changed."""

    def __init__(self) -> None:
        self._per: dict[str, RegionHealth] = {}
        self._holds: dict[str, set[str]] = {}
        self._holding: Counter[str] = Counter()
        self._key: tuple[tuple[str, str], ...] | None = None
        self.moved = True  # whether the last update changed anything

    def update(
        self, metas: dict[str, RegionMeta], changed: Iterable[str], live: dict[str, NodeInfo]
    ) -> tuple[list[RegionHealth], set[str]]:
        """Every region's health, and the nodes holding some fragment."""
        key = tuple(sorted((n, i.incarnation) for n, i in live.items()))
        redo = set(metas) | set(self._per) if key != self._key else set(changed)
        self._key = key
        self.moved = bool(redo)
        for name in redo:
            self._holding.subtract(self._holds.pop(name, set()))
            meta = metas.get(name)
            if meta is None:
                self._per.pop(name, None)
                continue
            self._per[name] = region_health(meta, live)
            held = holders([meta])
            self._holds[name] = held
            self._holding.update(held)
        holding = {n for n, count in self._holding.items() if count > 0}
        return list(self._per.values()), holding


@dataclass
class RegionTotals:
    """The region side of health: what every region's health adds up to."""

    regions: int = 0
    stripes: int = 0
    degraded: int = 0
    unavailable: int = 0
    lost_stripes: int = 0
    holding: list[str] = field(default_factory=list)  # nodes holding some fragment
    checks: list[Check] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "checks": [asdict(c) for c in self.checks]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegionTotals:
        checks = [Check(**c) for c in d.get("checks", [])]
        counts = {k: int(d.get(k, 0)) for k in ("regions", "stripes", "degraded", "unavailable")}
        return cls(
            **counts,
            lost_stripes=int(d.get("lost_stripes", 0)),
            holding=[str(n) for n in d.get("holding", [])],
            checks=checks,
        )


def region_totals(
    per_region: list[RegionHealth], holding: set[str], detail_cap: int | None = None
) -> RegionTotals:
    """Sums and region checks; ``detail_cap`` bounds each check's detail lines (a
    summary kept in ZooKeeper must stay small whatever the number of regions)."""
    checks: list[Check] = []
    stripes = sum(r.stripes for r in per_region)
    degraded = sum(r.degraded_stripes for r in per_region)
    unavailable = sum(r.unavailable_stripes for r in per_region)
    gone = sorted((r for r in per_region if r.data_lost), key=_name)
    lost_stripes = sum(extents.count(r.data_lost) for r in per_region)
    if gone:
        checks.append(
            Check(
                "REGION_DATA_LOST",
                HEALTH_ERR,
                f"{_n(len(gone), 'region')} lost data: {', '.join(r.name for r in gone[:8])}"
                + (f" (+{len(gone) - 8} more)" if len(gone) > 8 else "")
                + f"; {_n(lost_stripes, 'stripe')} written have too few fragments left on "
                "any node. Bring back nodes that may hold them, restore from a copy, or "
                "accept the loss with 'ecmem region mark-lost-ok NAME'",
                _cap(
                    [f"{r.name}: stripes {extents.describe(r.data_lost)}" for r in gone], detail_cap
                ),
            )
        )
    bad = sorted((r for r in per_region if r.state == "unavailable"), key=_name)
    weak = sorted((r for r in per_region if r.state == "degraded"), key=_name)
    if bad:
        checks.append(
            Check(
                "REGION_UNAVAILABLE",
                HEALTH_ERR,
                f"{_n(len(bad), 'region')} with data unavailable: {unavailable}/{stripes} stripes "
                "lost more fragments than their policy tolerates",
                _cap([_region_line(r) for r in bad], detail_cap),
            )
        )
    if weak:
        pct = 100.0 * degraded / stripes if stripes else 0.0
        checks.append(
            Check(
                "REGION_DEGRADED",
                HEALTH_WARN,
                f"{_n(len(weak), 'region')} degraded: {degraded}/{stripes} stripes ({pct:.1f}%) "
                "readable but with reduced redundancy",
                _cap([_region_line(r) for r in weak], detail_cap),
            )
        )
    return RegionTotals(
        len(per_region), stripes, degraded, unavailable, lost_stripes, sorted(holding), checks
    )


def _name(r: RegionHealth) -> str:
    return r.name


def _cap(lines: list[str], cap: int | None) -> list[str]:
    if cap is None or len(lines) <= cap:
        return lines
    return [*lines[:cap], f"... and {len(lines) - cap} more"]


def damaged_records(damaged: dict[str, str], cap: int | None = None) -> list[Check]:
    """A check for records in ZooKeeper that could not be read (written by hand, by a
    bug, or by someone without the right to): left out of everything else."""
    if not damaged:
        return []
    names = sorted(damaged)
    return [
        Check(
            "RECORD_DAMAGED",
            HEALTH_WARN,
            f"{_n(len(names), 'record')} in ZooKeeper cannot be read and are left out: "
            f"{', '.join(names[:5])}{', ...' if len(names) > 5 else ''}; remove or rewrite "
            "them (ecmem health detail shows why)",
            _cap([f"{n}: {damaged[n]}" for n in names], cap),
        )
    ]


def summarize(
    nodes: dict[str, NodeInfo],
    totals: RegionTotals,
    rebuild: dict[str, Any] | None = None,
    drains: Iterable[str] = (),
    scrub: dict[str, Any] | None = None,
    coordinators: list[dict[str, Any]] | None = None,
) -> HealthReport:
    """``assess`` from the region side worked out already (``region_totals``)."""
    live = {k: v for k, v in nodes.items() if v.state == "up"}
    holding = set(totals.holding)
    # A node that is down but holds no fragment any more (rebuilt elsewhere) is out of
    # the cluster: worth listing, not worth a warning.
    down = sorted(k for k, v in nodes.items() if node_state(v, holding) == "down")
    out = sorted(k for k, v in nodes.items() if node_state(v, holding) == "out")
    checks: list[Check] = []
    if not live:
        checks.append(Check("NO_NODES", HEALTH_ERR, "no storage nodes are up"))
    draining = sorted(set(drains))
    if draining:
        moving = [n for n in draining if n in holding]
        checks.append(
            Check(
                "NODE_DRAINING",
                HEALTH_WARN if moving else "info",
                f"{_n(len(moving), 'node')} draining: {', '.join(moving)}"
                if moving
                else f"drained, ready for 'ecmem node rm': {', '.join(draining)}",
                [f"{n}: {'draining' if n in moving else 'drained'}" for n in draining],
            )
        )
    if rebuild and rebuild.get("state") == "running":
        total = int(rebuild.get("bytes_total", 0)) or 1
        done = int(rebuild.get("bytes_done", 0))
        checks.append(
            Check(
                "REBUILD_IN_PROGRESS",
                HEALTH_WARN,
                f"rebuilding {rebuild.get('slots_done', 0)}/{rebuild.get('slots_total', 0)} "
                f"fragment slots, {100.0 * done / total:.0f}% of "
                f"{total / 2**20:.0f} MiB",
            )
        )
    if coordinators is not None and not coordinators:
        checks.append(
            Check(
                "NO_COORDINATOR",
                HEALTH_WARN,
                "no coordinator is running: lost fragments are not rebuilt and nothing is "
                "scrubbed; start one with 'python -m coordinator --zk HOSTS --cluster NAME'",
            )
        )
    if scrub and scrub.get("unrepaired"):
        checks.append(
            Check(
                "SCRUB_ERRORS",
                HEALTH_ERR,
                f"the last scrub found {len(scrub['unrepaired'])} damaged fragments it did not "
                "repair: run 'ecmem scrub --repair'",
                [str(x) for x in scrub["unrepaired"]],
            )
        )
    if rebuild and rebuild.get("unrecoverable"):
        checks.append(
            Check(
                "REBUILD_FAILED",
                HEALTH_ERR,
                "the last rebuild pass found stripes with too few fragments left to rebuild",
                [str(x) for x in rebuild["unrecoverable"]],
            )
        )
    if down:
        checks.append(
            Check(
                "NODE_DOWN",
                HEALTH_WARN,
                f"{len(down)} of {len(nodes)} storage nodes down: {', '.join(down)}",
                [
                    f"{n} (last at {nodes[n].address}, domain {nodes[n].failure_domain})"
                    for n in down
                ],
            )
        )
    full = [n for n in live.values() if n.capacity and n.used >= FULL * n.capacity]
    nearfull = [
        n
        for n in live.values()
        if n.capacity and NEARFULL * n.capacity <= n.used < FULL * n.capacity
    ]
    if full:
        checks.append(
            Check(
                "NODE_FULL",
                HEALTH_ERR,
                f"{_n(len(full), 'node')} full: " + ", ".join(sorted(n.id for n in full)),
            )
        )
    if nearfull:
        checks.append(
            Check(
                "NODE_NEARFULL",
                HEALTH_WARN,
                f"{_n(len(nearfull), 'node')} nearly full: "
                + ", ".join(sorted(n.id for n in nearfull)),
            )
        )
    checks.extend(totals.checks)
    severities = {c.severity for c in checks}
    status = (
        HEALTH_ERR
        if HEALTH_ERR in severities
        else HEALTH_WARN
        if HEALTH_WARN in severities
        else HEALTH_OK
    )
    report = HealthReport(
        status,
        checks,
        len(live),
        len(nodes),
        totals.regions,
        totals.stripes,
        totals.degraded,
        totals.unavailable,
        sum(n.capacity for n in live.values()),
        sum(n.used for n in live.values()),
        out,
        dict(rebuild or {}),
        lost_stripes=totals.lost_stripes,
    )
    return report


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _region_line(r: RegionHealth) -> str:
    slabs = ", ".join(f"slab {s}: fragments {idx}" for s, idx in sorted(r.lost.items())[:8])
    more = f" (+{len(r.lost) - 8} slabs)" if len(r.lost) > 8 else ""
    return f"{r.name}: {slabs}{more}"
