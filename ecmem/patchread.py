"""Reading a stripe's page patches for a reader that decoded the stripe around a node
(docs/protocol.md, "The page log"): from the nodes of the fragments it decoded, then
from the stripe's other placed nodes, until enough answered to be sure of all of them.

A node that folded the stripe into a version newer than the one decoded has dropped
the patches in between: its answer does not count, and if the others cannot vouch for
every patch without it, the reader reads the stripe again (``Moved``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from . import wire
from .conn import ConnectionPool
from .logs import Tally, where
from .pagelog import PatchEntry, complete
from .stripes import DEGRADED_TIMEOUT, RegionView

log = logging.getLogger(__name__)
UNREAD = Tally(log)  # once a minute per region, then counted


class Moved(Exception):
    """Patches newer than the version decoded were folded away on a node meanwhile."""


async def read_patches(
    pool: ConnectionPool,
    view: RegionView,
    stripe: int,
    frags: Iterable[int],
    after: int,
    asof: int,
) -> list[PatchEntry] | None:
    """The page patches of a stripe newer than version ``after`` (committed ones, or
    the writer's up to ``asof``), from the nodes of fragments ``frags`` (they just
    answered) and, if those cannot have them all now (one died or folded since), from
    the stripe's other nodes; None if not enough of them answer."""
    placement = view.placement(stripe)
    k = view.layout.policy.k
    msg = wire.GetPatches(view.id, stripe, wire.ALL_INDEXES, after, asof)
    found: dict[tuple[int, int, int], bytes] = {}
    answered: list[int] = []
    failures: list[str] = []
    moved = False
    slab = view.layout.slab_of(stripe)

    def vouches(i: int) -> bool:
        # A handed-off slot's node holds no patch from before the handoff.
        return bool(placement[i][0]) and view.partial.get((slab, i), 0) <= after

    first = [i for i in frags if vouches(i)]
    rest = [i for i in range(len(placement)) if i not in first and vouches(i)]
    for asked in (first, rest):
        answers = await asyncio.gather(
            *(pool.request(placement[i][0], msg, DEGRADED_TIMEOUT) for i in asked),
            return_exceptions=True,
        )
        for i, a in zip(asked, answers, strict=True):
            if isinstance(a, BaseException) or not isinstance(a[1], wire.PatchList):
                failures.append(f"fragment {i}: {a if isinstance(a, BaseException) else a[1]}")
                continue
            if a[1].base > after:
                moved = True
                continue
            answered.append(i)
            for version, index, at, data in a[1].patches():
                found[(version, index, at)] = data
        if complete(k, answered):
            return [(v, i, at, data) for (v, i, at), data in found.items()]
    if moved:
        raise Moved()
    why = "; ".join(failures) or "no node that answered holds them all"
    UNREAD.warn(
        f"region {view.name}",
        "stripes whose page patches could not be read",
        stripe,
        "region %s slab %d stripe %d: page patches not read (%s); the read waits for the "
        "nodes holding them, and fails if they stay out",
        view.name,
        slab,
        stripe,
        why,
        extra=where(view.name, slab),
    )
    return None
