"""Placement of a slab's fragments on storage nodes, as pure functions.

Rules, in order: distinct nodes; spread over failure domains as evenly as
they allow (distinct domains when there are enough); only nodes with room
for the fragment; and, among the nodes the rules allow, balance by free
capacity with the power of two choices.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ecmem.errors import ClusterFullError, NotEnoughNodesError


@dataclass(frozen=True)
class Candidate:
    id: str
    domain: str
    free: int


def place(
    candidates: Sequence[Candidate],
    width: int,
    need: int,
    rng: random.Random,
    avoid: Iterable[str] = (),
) -> list[str]:
    """Choose ``width`` nodes for one slab whose fragments take ``need`` bytes each."""
    skip = set(avoid)
    eligible = [c for c in candidates if c.id not in skip and c.free >= need]
    if len(eligible) < width:
        full = sorted(c.id for c in candidates if c.id not in skip and c.free < need)
        detail = f"; full or nearly full: {', '.join(full)}" if full else ""
        usable = sum(1 for c in candidates if c.id not in skip)
        short = ClusterFullError if usable >= width else NotEnoughNodesError
        raise short(
            f"placement needs {width} storage nodes with {need} bytes free, "
            f"only {len(eligible)} of {len(candidates)} live nodes qualify{detail}; "
            "start more nodes, free space, or choose a narrower policy"
        )
    eligible.sort(key=lambda c: c.id)
    used_domains: Counter[str] = Counter()
    chosen: list[str] = []
    remaining = list(eligible)
    for _ in range(width):
        # Water-filling: only domains with the fewest fragments so far may take the next.
        low = min(used_domains[c.domain] for c in remaining)
        allowed = [c for c in remaining if used_domains[c.domain] == low]
        if len(allowed) == 1:
            pick = allowed[0]
        else:
            a, b = rng.sample(allowed, 2)
            pick = a if (a.free, b.id) > (b.free, a.id) else b
        chosen.append(pick.id)
        used_domains[pick.domain] += 1
        remaining.remove(pick)
    return chosen


def place_slabs(
    candidates: Sequence[Candidate],
    count: int,
    width: int,
    need: int,
    rng: random.Random,
) -> list[list[str]]:
    """Place ``count`` slabs in turn, charging each choice against the nodes' free space."""
    pool = {c.id: c for c in candidates}
    out: list[list[str]] = []
    for _ in range(count):
        ids = place(list(pool.values()), width, need, rng)
        for node_id in ids:
            c = pool[node_id]
            pool[node_id] = replace(c, free=c.free - need)
        out.append(ids)
    return out


def replacement(
    candidates: Sequence[Candidate],
    members: Iterable[str],
    member_domains: Iterable[str],
    need: int,
    rng: random.Random,
) -> str:
    """One node to take over a fragment of a slab held by ``members``: never a member,
    in a failure domain the slab does not use yet when one has room."""
    taken = set(members)
    used = set(member_domains)
    others = [c for c in candidates if c.id not in taken]
    if not others:
        raise NotEnoughNodesError(
            f"every live node ({len(candidates)}) already holds a fragment of this slab, "
            "and a slab needs distinct nodes; start another storage node to rebuild onto"
        )
    fresh = [c for c in others if c.domain not in used and c.free >= need]
    return place(fresh or others, 1, need, rng)[0]
