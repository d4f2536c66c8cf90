"""A writer brings its region's handed-off slots up to date itself.

A slot handed off while writing is *partial*: its new holder has every write since the
handoff, none from before. A slot left vacant (no node qualified, or its holder missed a
commit) is offered again to a live node after each commit, and caught up the same way.
The rebuilder fills such slots, but only under the region's write
lease, which a writer that keeps writing never gives back: reads then go around the
slot, and a few more faults make stripes unreadable. So the lease holder does it: it
rewrites every written stripe of the slab (read, page patches laid, while no write of
it is queued, then written whole at a version of its own, so every slot of the
stripe, the partial one too, holds it), commits, and then records the slot as whole.

Why that is enough: after the folds every written stripe of the slab has a committed
version newer than the handoff, staged on the slot's holder (a holder that failed one
was handed off again, and the record no longer matches: nothing is settled). A stripe
never written needs nothing, and writes from here on go to the holder as to any slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from . import extents, folding, handoff, wire
from .errors import ClusterError, EcmemError
from .layout import Layout
from .logs import where
from .meta.model import RegionMeta

log = logging.getLogger(__name__)

BATCH = 8  # stripes read and queued per hold of the region's lock
LIST_TIMEOUT = 2.0  # seconds a partial holder has to list what it holds
TURNS = 1000  # holds of the lock one catch-up may take before it waits its turn again
RETRY_AFTER = 0.5  # seconds before a catch-up that failed is tried again


def _stripe_data(m: RegionMeta) -> int:
    return Layout.of(m.policy, m.chunk, m.slab_stripes).stripe_data


def stripes_to_fold(meta: RegionMeta, slab: int) -> list[int]:
    """The slab's stripes a partial slot of it lacks: written, not lost, inside the size."""
    layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
    first = slab * meta.slab_stripes
    end = min(first + meta.slab_stripes, -(-meta.size // layout.stripe_data))
    kept = extents.minus(extents.within(meta.written, first, end), meta.lost)
    return list(extents.stripes(kept))


def start(
    w: Any,
    lock: AbstractAsyncContextManager[Any],
    meta: Callable[[], Awaitable[RegionMeta]],
) -> None:
    """Start catching up the region's partial slots in the background, if it has some
    and no catch-up is under way (or failed a moment ago)."""
    cached = w.host.regions.cached(w.name)
    if cached is None or not (cached.partial or vacant(cached)):
        return
    if w.catching_up is not None and not w.catching_up.done():
        return
    if time.monotonic() < w.catch_up_after:
        return
    w.catching_up = asyncio.ensure_future(_run(w, lock, meta))


async def _run(
    w: Any, lock: AbstractAsyncContextManager[Any], meta: Callable[[], Awaitable[RegionMeta]]
) -> None:
    try:
        m = await meta()
        if vacant(m) and not w.host.holder.get("rebuild"):  # the rebuilder fills its own
            m = await _fill_vacant(w, m, meta)
        for slab in sorted({s for s, _ in m.partial_slots()}):
            await catch_up(w, lock, meta, slab)
    except EcmemError as exc:
        w.catch_up_after = time.monotonic() + RETRY_AFTER
        log.info("region %s: catching up its handed-off slots waits (%s)", w.name, exc)
    except asyncio.CancelledError:
        pass


def vacant(m: RegionMeta) -> list[tuple[int, int]]:
    """(slab, index) of slots no node holds."""
    return [(s, i) for s, p in sorted(m.slabs.items()) for i, (n, _) in enumerate(p) if not n]


async def _fill_vacant(
    w: Any, m: RegionMeta, meta: Callable[[], Awaitable[RegionMeta]]
) -> RegionMeta:
    """Offer each vacant slot to a live node outside its slab, as a write to it would
    (at most once a second per slot); a slot taken is partial, caught up next."""
    view = w.host.regions.view(m)
    live = w.host.live_nodes()
    now = time.monotonic()
    for slab, index in vacant(m):
        # The watched membership says at no cost whether some node could take it: only
        # then does the handoff read ZooKeeper.
        unfit = handoff.unfit_for(w, slab, m.slab_stripes, now)
        members = {n for n, _ in m.slabs[slab]}
        if all(n in members or n in unfit or w.host.pool.is_suspect(n) for n in live):
            continue
        await w.replace(view, slab * m.slab_stripes, index, "filled by its writer")
    return await meta()


Marks = dict[int, tuple[tuple[str, str], int]]  # index -> (holder, partial_since)


def marks(m: RegionMeta, slab: int) -> Marks:
    """The slab's partial slots as they stand: their holders and versions counted from."""
    return {i: (m.slabs[slab][i], v) for (s, i), v in m.partial_slots().items() if s == slab}


async def catch_up(
    w: Any,
    lock: AbstractAsyncContextManager[Any],
    meta: Callable[[], Awaitable[RegionMeta]],
    slab: int,
) -> list[int]:
    """Rewrite every written stripe of ``slab`` that one of its partial slots lacks,
    commit, and settle the partial slots whose holder and version are unchanged since
    the start. Returns the fragment indexes settled."""
    began = time.monotonic()
    m = await meta()
    start = marks(m, slab)
    lacking: set[int] = set()
    helds = await asyncio.gather(
        *(_held(w, m, h[0], slab, i, since) for i, (h, since) in start.items()),
        return_exceptions=True,
    )
    for index, have in zip(list(start), helds, strict=True):
        if isinstance(have, BaseException):
            if not isinstance(have, EcmemError):
                raise have
            del start[index]  # its holder did not answer: not settled this time
            continue
        lacking |= {s for s in stripes_to_fold(m, slab) if s not in have}
    if not start:
        raise ClusterError(f"no partial holder of slab {slab} listed its fragments")
    todo = sorted(lacking)
    total = len(todo)
    unreadable: list[int] = []  # left for the next pass; the others are rewritten now
    for _ in range(TURNS):
        if not todo:
            break
        async with lock:
            m = _as_written(w, await meta())
            now = marks(m, slab)
            if not any(now.get(i) == mark for i, mark in start.items()):
                return []  # every one handed off again, or rebuilt meanwhile
            todo = [s for s in todo if s * _stripe_data(m) < m.size]  # a truncation
            batch = todo[:BATCH]
            failed = await _unreadable(w, m, batch)
            # Each fold queues first (its version then) and reads after the writes of
            # the stripe queued before it: no write is overwritten with older bytes.
            await asyncio.gather(*(folding.fold(w, m, s) for s in batch if s not in failed))
        unreadable += failed
        todo = todo[len(batch) :]
        await w.commit()
    if unreadable:
        raise ClusterError(f"stripes {unreadable[:4]} of slab {slab} cannot be read now")
    if todo:
        raise ClusterError(f"{len(todo)} stripes of slab {slab} left after {TURNS} turns")
    # Settle only slots whose holders now list every stripe the record calls written
    # (one first recorded since the start counts too).
    m = await meta()
    whole = set()
    for index, (holder, since) in start.items():
        with contextlib.suppress(EcmemError):
            if set(stripes_to_fold(m, slab)) <= await _held(w, m, holder[0], slab, index, since):
                whole.add(index)

    def settle(r: RegionMeta) -> RegionMeta | None:
        w.check_epoch(r)
        now = marks(r, slab)
        same = [i for i in whole if now.get(i) == start[i]]
        if not same:
            return None
        r.settle_slots([(slab, i) for i in same])
        return r

    settled = await w.host.regions.update(w.name, settle)
    caught = [i for i in start if (slab, i) not in settled.partial_slots()]
    if caught:
        log.info(
            "region %s slab %d: fragments %s caught up (%d stripes rewritten in %.2fs)",
            w.name,
            slab,
            caught,
            total,
            time.monotonic() - began,
            extra=where(w.name, slab),
        )
    return caught


def _as_written(w: Any, m: RegionMeta) -> RegionMeta:
    """The record with the size this writer has written to (growth it has staged may
    not be published yet): a rewrite must keep those bytes, not zero them."""
    size = max(m.size, w.published, *w.unpublished.values())
    return m if size == m.size else dataclasses.replace(m, size=size)


async def _held(w: Any, m: RegionMeta, node: str, slab: int, index: int, since: int) -> set[int]:
    """The slab's stripes whose fragment ``index`` the holder has already, committed at
    ``since`` or newer (written since the handoff): those need no rewrite."""
    _, reply = await w.host.pool.request(node, wire.List(m.id, 0), LIST_TIMEOUT)
    if not isinstance(reply, wire.Listing):
        raise ClusterError(f"node {node} did not list its fragments: {reply}")
    first, end = slab * m.slab_stripes, (slab + 1) * m.slab_stripes
    return {
        int(e[1])
        for e in reply.entries
        if first <= int(e[1]) < end and int(e[2]) == index and int(e[3]) >= since
    }


async def _unreadable(w: Any, m: RegionMeta, stripes: list[int]) -> list[int]:
    """The stripes of ``stripes`` that cannot be read now: a fold of one would take a
    version and then fail to stage it, and a version given up stops the writer's
    commits. (A read can still fail between this look and the fold's own read, if a
    node dies just then: the writer stops, and the next one goes on.)"""
    view = folding.writers_view(w, m)
    reads = await asyncio.gather(
        *(w.host.io.read_degraded(view, s, w.latest.get(s, 0)) for s in stripes),
        return_exceptions=True,
    )
    out = []
    for s, got in zip(stripes, reads, strict=True):
        if isinstance(got, EcmemError):
            out.append(s)
        elif isinstance(got, BaseException):
            raise got
    return out
