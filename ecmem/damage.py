"""Which fragment slots need rebuilding, as a pure function of a metadata snapshot.

A slot of a slab (one fragment index) needs work when its holder is:
- vacant: no node holds it (a writer left it so when a node failed a write);
- partial: a handoff node that joined after the slab had data and lacks older stripes;
- lost: a node gone longer than the grace delay (or named by an operator's request);
- replaced: a node back with a new incarnation, that is, without its data;
- draining: a live node an operator asked to empty.
A node gone for less than the grace delay is waited for: it may come back whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ecmem.meta.model import NodeInfo, RegionMeta

VACANT = "vacant"
PARTIAL = "partial"
LOST = "lost"
REPLACED = "replaced"
DRAINING = "draining"


@dataclass(frozen=True, order=True)
class Slot:
    region: str
    slab: int
    index: int
    holder: tuple[str, str]
    reason: str


@dataclass(frozen=True)
class Damage:
    slots: list[Slot]
    waiting: dict[str, float]  # node -> seconds of grace left


def find_damage(
    regions: Iterable[RegionMeta],
    live: dict[str, NodeInfo],
    down_since: dict[str, float],
    now: float,
    grace: float,
    draining: Iterable[str] = (),
    forced: Iterable[str] = (),
) -> Damage:
    drain, force = set(draining), set(forced)
    slots: list[Slot] = []
    waiting: dict[str, float] = {}
    for meta in regions:
        partial = set(meta.partial)
        for slab, placement in enumerate(meta.slabs):
            for index, (node, incarnation) in enumerate(placement):
                reason = ""
                if not node:
                    reason = VACANT
                elif node in live:
                    if live[node].incarnation != incarnation:
                        reason = REPLACED
                    elif node in drain:
                        reason = DRAINING
                    elif (slab, index) in partial:
                        reason = PARTIAL
                else:
                    left = grace - (now - down_since.get(node, now))
                    if left <= 0 or node in force:
                        reason = LOST
                    else:
                        waiting[node] = max(0.0, left)
                if reason:
                    slots.append(Slot(meta.name, slab, index, (node, incarnation), reason))
    return Damage(sorted(slots), waiting)


def by_slab(slots: Iterable[Slot]) -> dict[tuple[str, int], list[Slot]]:
    out: dict[tuple[str, int], list[Slot]] = {}
    for s in slots:
        out.setdefault((s.region, s.slab), []).append(s)
    return out
