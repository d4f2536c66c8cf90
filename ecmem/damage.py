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
from dataclasses import dataclass, field

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
        for slab, placement in meta.slabs.items():
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


@dataclass
class DamageTally:
    """``find_damage`` kept between passes: a pass looks again at the regions that
    changed and at those damaged or waiting last time, and at every region only when the
    nodes' state moved (one joined, left, came back new, was drained or named)."""

    _per: dict[str, Damage] = field(default_factory=dict)
    _key: tuple[object, ...] = ()

    def update(
        self,
        metas: dict[str, RegionMeta],
        changed: Iterable[str],
        live: dict[str, NodeInfo],
        down_since: dict[str, float],
        now: float,
        grace: float,
        draining: Iterable[str] = (),
        forced: Iterable[str] = (),
    ) -> Damage:
        drain, force = sorted(set(draining)), sorted(set(forced))
        key = (
            tuple(sorted((n, i.incarnation) for n, i in live.items())),
            tuple(sorted(down_since)),
            tuple(drain),
            tuple(force),
        )
        if key != self._key:
            self._key, self._per = key, {}
            redo: set[str] = set(metas)
        else:
            redo = set(changed) | set(self._per)
        for name in redo:
            meta = metas.get(name)
            if meta is None:
                self._per.pop(name, None)
                continue
            found = find_damage([meta], live, down_since, now, grace, drain, force)
            if found.slots or found.waiting:
                self._per[name] = found
            else:
                self._per.pop(name, None)
        waiting: dict[str, float] = {}
        for d in self._per.values():
            waiting.update(d.waiting)
        return Damage(sorted(s for d in self._per.values() for s in d.slots), waiting)
