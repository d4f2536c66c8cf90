"""Folding page patches into their stripes (docs/protocol.md, "The page log").

A writer folds a stripe by reading it with its patches laid over (decoded from its
fragments without them, then the patches from the nodes that keep them) and writing it
back whole at a new version: once that version is committed, nodes drop the patches
it covers. A writer folds a stripe that gathered enough patches (``pagelog.FOLD``),
and a new writer folds every patch the previous one left before it takes writes, so
that a session (and the rebuilder and scrubber, which write through sessions) starts
with none.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from . import pagelog, patience, wire
from .errors import DataUnavailableError, EcmemError, NodeUnavailable
from .layout import Layout
from .meta.model import RegionMeta
from .pagelog import PatchEntry, Unfolded, lay_patches
from .recovery import Staged
from .stripes import RegionView, Stamp
from .writers import Ticket

log = logging.getLogger(__name__)


class Session(Protocol):
    """What folding needs of a writer session (ecmem/writer.py)."""

    host: Any
    name: str
    answered: set[str]
    patched: Unfolded
    latest: dict[int, int]
    inflight: set[int]

    def begin(self, first: int, last: int, end: int) -> Stamp: ...

    def finish(self, stamp: Stamp, ok: bool, why: str = "") -> None: ...

    async def replace(self, view: RegionView, stripe: int, index: int, why: str) -> bool: ...

    def enqueue(self, meta: RegionMeta, offset: int, n: int) -> Ticket: ...

    async def commit(self, upto: int | None = None) -> None: ...


async def listed(w: Session, meta: RegionMeta, kind: int) -> list[Staged]:
    """What the region's nodes hold of ``kind`` (wire.List: 0 committed fragments,
    1 staged fragments, 2 page patches), as far as the placement goes."""
    answers = await w.host.io.broadcast(
        [n for slab in meta.slabs.values() for n, _ in slab], wire.List(meta.id, kind)
    )
    layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
    out = []
    for node, reply in answers.items():
        if not isinstance(reply, wire.Listing):
            continue
        for _, stripe, index, version, _, first, last, end in reply.entries:
            slab = layout.slab_of(stripe)
            if slab not in meta.slabs:
                continue
            holder = meta.slabs[slab][index][0] if kind != 2 else None
            if holder is None or holder == node:
                out.append(Staged(version, stripe, index, (first, last, end)))
    return out


async def fold_recovered(
    w: Session, meta: RegionMeta, patches: list[Staged], staged: list[Staged], kept: int
) -> None:
    """Fold every stripe holding patches the region keeps (committed, or kept by this
    recovery): each is read as of ``kept`` and written whole at a version of ours,
    staged; the recovery's commit round then commits them with what it kept."""
    stripes = sorted({p.stripe for p in patches if p.version <= kept})
    if not stripes:
        return
    bases: dict[int, int] = {}
    for f in [*staged, *await listed(w, meta, 0)]:
        if f.version <= kept and f.stripe in stripes:
            bases[f.stripe] = max(bases.get(f.stripe, 0), f.version)
    view = w.host.regions.view(meta)
    layout = view.layout
    folded = 0
    for stripe in stripes:
        base = bases.get(stripe, 0)
        reached = sum(1 for n, _ in view.placement(stripe) if n and n in w.answered)
        try:
            if reached < view.durable_minimum():
                raise NodeUnavailable(f"{reached} of its nodes answered, too few to write it")
            data, _ = await w.host.io.read_degraded(view, stripe, base, lay=False)
        except (DataUnavailableError, NodeUnavailable) as exc:
            # Its patches stay where they are (a later writer folds them), and this one
            # writes the stripe only whole meanwhile.
            newest = max(p.version for p in patches if p.stripe == stripe and p.version <= kept)
            w.patched.stuck(stripe, newest)
            log.warning(
                "region %s stripe %d: its page patches cannot be folded now (%s); the "
                "stripe is written whole until they are",
                meta.name,
                stripe,
                exc,
            )
            continue
        cells = bytearray(data)
        lay_patches(
            layout, cells, 0, layout.chunk, await _every_patch(w, view, stripe, base, kept, patches)
        )
        await rewrite(w, view, stripe, bytes(cells), meta.size)
        folded += 1
    if folded:
        log.info(
            "region %s: folded the page patches the previous writer left on %d stripes",
            meta.name,
            folded,
        )


async def _every_patch(
    w: Session, view: RegionView, stripe: int, base: int, kept: int, listed: list[Staged]
) -> list[PatchEntry]:
    """Every patch of a stripe newer than ``base`` up to ``kept``, asked of every node of
    the stripe (one the old writer left may be on one node alone); each one ``listed``
    must be found."""
    nodes = sorted({n for n, _ in view.placement(stripe) if n})
    msg = wire.GetPatches(view.id, stripe, wire.ALL_INDEXES, base, kept)
    answers = await w.host.io.broadcast(nodes, msg)
    found: dict[tuple[int, int, int], bytes] = {}
    for reply in answers.values():
        if isinstance(reply, wire.PatchList):
            for version, index, at, data in reply.patches():
                found[(version, index, at)] = data
    have = {(v, i) for v, i, _ in found}
    missing = [p for p in listed if p.stripe == stripe and base < p.version <= kept]
    missing = [p for p in missing if (p.version, p.index) not in have]
    if missing:
        raise NodeUnavailable(
            f"region {view.name!r} stripe {stripe}: the nodes holding page patches "
            f"{sorted({p.version for p in missing})[:4]} did not answer; the next writer "
            "tries again"
        )
    return [(v, i, at, data) for (v, i, at), data in found.items()]


async def rewrite(
    w: Session,
    view: RegionView,
    stripe: int,
    data: bytes,
    size: int,
    stamp: Stamp | None = None,
) -> int:
    """Stage ``data`` as the whole of ``stripe`` (bytes past ``size`` kept as zeros), as
    write ``stamp`` or a new one; the caller holds the stripe, or no one else writes."""
    sd = view.layout.stripe_data
    end = min(size, (stripe + 1) * sd)
    if stamp is None:
        stamp = w.begin(stripe, stripe, end)
    stamp.may_patch = False
    try:
        await w.host.io.write_stripe(view, stripe, data, stamp, end - stripe * sd, w.replace)
    except BaseException as exc:
        w.finish(stamp, False, str(exc))
        raise
    w.finish(stamp, True)
    return stamp.version


def due(w: Session) -> list[int]:
    """Stripes this writer must fold now: those ``pagelog.FOLD`` says, and while its
    unfolded patches hold UNFOLDED_MAX bytes or more, those holding most of them."""
    return w.patched.due(pagelog.FOLD, pagelog.UNFOLDED_MAX)


async def fold_due(
    w: Session, lock: AbstractAsyncContextManager[Any], meta: Callable[[], Awaitable[RegionMeta]]
) -> None:
    """Fold the stripes ``due`` now, under the region's ``lock``, and commit the folds.
    The writes before were committed already and stand if a fold fails: that is logged,
    not raised (the writer stops if the fold took a version; the next one folds)."""
    try:
        async with lock:
            m = await meta()
            sd = Layout.of(m.policy, m.chunk, m.slab_stripes).stripe_data
            stripes = [s for s in due(w) if s * sd < m.size]
            await asyncio.gather(*(fold(w, m, s) for s in stripes))
        await w.commit()
    except EcmemError as exc:
        log.warning(
            "region %s: folding page patches failed (%s); the writes before are committed, "
            "and the region's next writer folds them",
            w.name,
            exc,
        )


def writers_view(w: Session, meta: RegionMeta) -> RegionView:
    """The view a writer reads its own stripes by: its record is sure to hold the paged
    mark if any writer set it (only the lease holder sets it, and a takeover's epoch
    bump is a versioned set over every earlier change), so "never paged" holds without a
    fresh read. A writer whose lease went meanwhile reads stale bytes at worst, and its
    rewrite of them is refused by the nodes the new writer fenced."""
    view: RegionView = w.host.regions.view(meta)
    return dataclasses.replace(view, synced=True)


async def fold(w: Session, meta: RegionMeta, stripe: int) -> int:
    """Fold one stripe this writer patched, queued behind the writes of it already
    queued and given its version now, so later writes stay later. Call under the
    region's lock, as writes are queued."""
    sd = Layout.of(meta.policy, meta.chunk, meta.slab_stripes).stripe_data
    ticket = w.enqueue(meta, stripe * sd, min(sd, meta.size - stripe * sd))
    try:
        await ticket.ready()
        newest = w.patched.newest(stripe)

        async def read(tries: int) -> tuple[RegionView, bytes]:
            # Given up, the fold's version would stop the writer: wait out a fault, by
            # the placement as it is now.
            m = meta if tries == 0 else await w.host.regions.get(w.name)
            view = writers_view(w, dataclasses.replace(m, size=meta.size))
            data, _ = await w.host.io.read_degraded(view, stripe, w.latest.get(stripe, 0), newest)
            return view, data

        view, data = await patience.patiently(
            read, patience.unmoved, patience.hopeful, asyncio.sleep, patience.PATIENCE
        )
        return await rewrite(w, view, stripe, data, meta.size, ticket.stamp)
    except BaseException as exc:
        if ticket.stamp.version in w.inflight:  # given up before staging: a barrier
            w.finish(ticket.stamp, False, f"fold given up: {exc!r}")
        raise
    finally:
        ticket.release()
