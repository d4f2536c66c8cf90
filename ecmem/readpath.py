"""Reading stripes of a region from its storage nodes.

A healthy read fetches only the bytes asked for, straight from the data fragments
that hold them, and decodes nothing. A missing, unreachable, stale or damaged
fragment switches that stripe to a degraded read: ask every fragment, take the
first k of one version, decode. A read spanning stripes that saw a write in one and
not yet in another reads again, so no write shows torn. Fewer than k good fragments:
an error naming what is lost (lost, if the stripe was written), never wrong bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from . import checksum, strays, wire
from .conn import ConnectionPool
from .errors import ClusterError, DataLostError, DataUnavailableError, NodeTimeout, NodeUnavailable
from .layout import Piece, column
from .pagelog import PatchEntry, lay_patches
from .patchread import Moved, read_patches
from .policy import ECPolicy, ReplicationPolicy
from .stripes import (
    CHURN_RETRIES,
    DEGRADED_TIMEOUT,
    HEDGE_AFTER,
    READ_TIMEOUT,
    READ_WINDOW,
    TORN_RETRIES,
    Failed,
    Failures,
    Got,
    Missing,
    Outcome,
    RegionView,
    Seen,
    check_reply,
    windowed,
)

log = logging.getLogger(__name__)

# A degraded read of at most this many bytes of each fragment decodes that column
# alone instead of whole fragments.
COLUMN_MAX = 256 * 1024


class ReadPath:
    """Reads of stripes: healthy ones straight from the data fragments, degraded ones
    from any k fragments of one version, and multi-stripe reads never torn."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    async def fetch(
        self,
        view: RegionView,
        stripe: int,
        index: int,
        offset: int,
        length: int,
        timeout: float = READ_TIMEOUT,
        into: memoryview | None = None,
        avoid_suspects: bool = True,
        want: int = 0,
        raw: bool = False,
    ) -> Outcome:
        """Bytes [offset, offset+length) of one fragment's committed version (or of
        version ``want``), checked against their sums; ``raw``: without page patches.

        With ``into`` (``length`` bytes) they are received straight into it; after a
        failure its contents are undefined.
        """
        node_id, incarnation = view.placement(stripe)[index]
        if not node_id:
            # Its former holder may hold a copy still, off the placement: not surely gone.
            return Failed(f"no node holds fragment {index} until it is rebuilt")
        if avoid_suspects and self.pool.is_suspect(node_id):
            return Failed(f"node {node_id} is slow to answer")
        try:
            conn, reply = await self.pool.request(
                node_id,
                wire.Get(view.id, stripe, index, offset, length, want, 0, int(raw)),
                timeout,
                into,
            )
        except NodeTimeout as exc:
            self.pool.suspect(node_id)
            return Failed(str(exc))
        except NodeUnavailable as exc:
            return Failed(str(exc))
        return check_reply(view, stripe, index, offset, length, conn.incarnation, reply, into, want)

    async def read_piece(
        self,
        view: RegionView,
        stripe: int,
        start: int,
        length: int,
        out: memoryview,
        want: int = 0,
    ) -> Seen:
        """Fill ``out`` (``length`` bytes) with bytes [start, start+length) of a stripe:
        of its committed version, or of version ``want``. Returns the version read and
        its write's extent."""
        if view.unplaced_hole(stripe, want):
            out[:length] = bytes(length)  # a hole in a slab never written: nothing to ask
            return (0, 0, 0)
        ranges = list(view.layout.data_ranges(stripe, start, length))
        if len(ranges) == 1 and length <= COLUMN_MAX:
            hedged = await self._hedged(view, stripe, start, length, out, want, ranges[0])
            if isinstance(hedged, tuple):
                return hedged
            outcomes = [hedged]
        elif len(ranges) == 1:
            i, off, n, pos = ranges[0]
            outcomes = [
                await self.fetch(view, stripe, i, off, n, into=out[pos : pos + n], want=want)
            ]
        else:
            outcomes = await asyncio.gather(
                *(
                    self.fetch(view, stripe, i, off, n, into=out[pos : pos + n], want=want)
                    for i, off, n, pos in ranges
                )
            )
        versions = {o.version if isinstance(o, Got) else 0 for o in outcomes}
        if len(versions) == 1 and not any(isinstance(o, Failed) for o in outcomes):
            seen: Seen = (0, 0, 0)
            for (_, _, n, pos), o in zip(ranges, outcomes, strict=True):
                if isinstance(o, Got):
                    if o.seen >= seen[0]:  # a fragment may carry a newer patch than another
                        seen = (o.seen, *o.extent)
                else:
                    out[pos : pos + n] = bytes(n)
            return seen
        self.pool.metrics.degraded_reads.inc()
        got = await self.read_column(view, stripe, start, length, out, want)
        if got is not None:
            return got
        data, seen = await self.read_degraded(view, stripe, want)
        out[:length] = memoryview(data)[start : start + length]
        return seen

    async def _hedged(
        self,
        view: RegionView,
        stripe: int,
        start: int,
        length: int,
        out: memoryview,
        want: int,
        where: tuple[int, int, int, int],
    ) -> Outcome | Seen:
        """A small read of one fragment that, if the fragment's node has not answered
        within HEDGE_AFTER, also reads the column from the others and takes whichever is
        first: a paused node costs a page read tens of milliseconds, not seconds."""
        i, off, n, _ = where
        scratch = bytearray(n)  # a late answer must never land in the caller's buffer
        first = asyncio.ensure_future(
            self.fetch(view, stripe, i, off, n, into=memoryview(scratch), want=want)
        )
        second: asyncio.Future[Seen | None] | None = None
        try:
            done, _ = await asyncio.wait({first}, timeout=HEDGE_AFTER)
            if not done and view.layout.policy.width > view.layout.policy.k:
                node_id = view.placement(stripe)[i][0]
                if node_id:
                    self.pool.hedged(node_id)
                cells = bytearray(length)
                second = asyncio.ensure_future(
                    self.read_column(view, stripe, start, length, memoryview(cells), want)
                )
                pending: set[asyncio.Future[Any]] = {first, second}
                while pending:
                    _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    if second.done() and (seen := second.result()) is not None:
                        out[:length] = cells
                        return seen
                    if first.done() and isinstance(first.result(), Got):
                        break
            outcome = await first
        finally:
            first.cancel()
            if second is not None:
                second.cancel()
        if isinstance(outcome, Got):
            out[:length] = scratch
            outcome = Got(
                outcome.version, out[:length], outcome.extent, outcome.pending, outcome.patched
            )
        return outcome

    async def read_column(
        self,
        view: RegionView,
        stripe: int,
        start: int,
        length: int,
        out: memoryview,
        want: int = 0,
        asof: int = 0,
    ) -> Seen | None:
        """A degraded read of a few pages: fetch only the column of the stripe that holds
        them (the same bytes of every fragment) and decode that column alone; the codes
        work column by column. None when no k fragments of one version answer: the
        whole-stripe degraded read then decides (and names what is lost)."""
        layout = view.layout
        policy = layout.policy
        page = checksum.PAGE
        if isinstance(policy, ReplicationPolicy):
            lo, hi = start, start + length
        else:
            ranges, lo, hi = column(layout, stripe, start, length, page)
        if hi - lo > COLUMN_MAX:
            return None
        by_version, _, _, spans, patched = await self._gather(
            view, stripe, want, range(policy.width), (policy.header + lo, hi - lo)
        )
        winner = max((v for v, f in by_version.items() if len(f) >= policy.k), default=None)
        if winner is None:
            return None
        frags = by_version[winner]
        if isinstance(policy, ReplicationPolicy):
            out[:length] = next(iter(frags.values()))[:length]
        else:
            width = hi - lo
            heads = policy.column_headers(width)
            cells: bytes | bytearray = policy.decode(
                {i: heads[i] + f for i, f in frags.items()}, width
            )
            if patched.get(winner) or asof:
                try:
                    found = await self.patches(view, stripe, frags, winner, asof)
                except Moved:
                    found = None
                if found is None:
                    return None
                cells = bytearray(cells)
                lay_patches(layout, cells, lo, width, found)
                if found:  # seen as of its newest patch (its write's extent unknown here)
                    winner = max(v for v, _, _, _ in found)
                    spans[winner] = (stripe, 1)
            for index, off, n, pos in ranges:
                at = index * width + off - policy.header - lo
                out[pos : pos + n] = cells[at : at + n]
        log.debug(
            "region %s slab %d stripe %d: degraded read of bytes %d+%d decoded from fragments %s",
            view.name,
            layout.slab_of(stripe),
            stripe,
            start,
            length,
            sorted(frags),
        )
        return (winner, *spans.get(winner, (0, 0)))

    async def read_degraded(
        self, view: RegionView, stripe: int, want: int = 0, asof: int = 0, lay: bool = True
    ) -> tuple[bytes, Seen]:
        for attempt in range(CHURN_RETRIES):
            try:
                return await self._read_degraded(view, stripe, want, asof, lay)
            except Moved:  # a fold was committed between the fragments and the patches
                await asyncio.sleep(0.002 * (attempt + 1))
        policy = view.layout.policy
        why = "its page patches were folded into a newer version while it was read; retry"
        raise DataUnavailableError(
            view.name, view.layout.slab_of(stripe), stripe, dict.fromkeys(range(policy.width), why),
            policy.k,
        )  # fmt: skip

    async def _read_degraded(
        self, view: RegionView, stripe: int, want: int, asof: int, lay: bool
    ) -> tuple[bytes, Seen]:
        """The whole stripe, decoded from any k fragments of one version: the newest
        committed one (or ``want``), with its page patches (committed ones, or the
        writer's up to ``asof``; none if not ``lay``); with the version read and its
        write's extent."""
        layout = view.layout
        policy = layout.policy
        k = policy.k
        for attempt in range(CHURN_RETRIES):
            by_version, failed, missing, spans, patched = await self._gather(
                view, stripe, want, range(policy.width)
            )
            winner = next(
                (v for v in sorted(by_version, reverse=True) if len(by_version[v]) >= k), None
            )
            if winner is not None or want or sum(map(len, by_version.values())) < k:
                break
            # Enough fragments, but of different versions: writes are being committed
            # over this stripe right now. Let them land and look again.
            await asyncio.sleep(0.002 * (attempt + 1))
        if winner is None and by_version and not want:
            # A commit may be on its way: the newest committed version, wherever it was
            # seen, is on every node that staged it.
            newest = max(by_version)
            others = [i for i in range(policy.width) if i not in by_version[newest]]
            more, _, _, _, more_patched = await self._gather(view, stripe, newest, others)
            patched.update(more_patched)
            by_version[newest].update(more.get(newest, {}))
            if len(by_version[newest]) >= k:
                winner = newest
        target = want or max(by_version, default=0)
        if winner is None and lay and target and view.is_written(stripe):
            # Fewer than k of the version settled on (seen on the placement: a node that
            # timed out may hold a newer one): a slot's former holder may have its copy.
            if await strays.fill(self.pool, view, stripe, target, by_version, patched, asof):
                winner = target
        if winner is not None:
            log.debug(
                "region %s slab %d stripe %d: degraded read decoded from fragments %s",
                view.name,
                layout.slab_of(stripe),
                stripe,
                sorted(by_version[winner]),
            )
            seen: Seen = (winner, *spans.get(winner, (0, 0)))
            data = policy.decode(by_version[winner], layout.chunk)
            if lay and (patched.get(winner) or asof) and isinstance(policy, ECPolicy):
                found = await self.patches(view, stripe, by_version[winner], winner, asof)
                if found is None:
                    raise DataUnavailableError(
                        view.name,
                        layout.slab_of(stripe),
                        stripe,
                        {i: "its page patches could not be read" for i in range(policy.width)},
                        k,
                    )
                cells = bytearray(data)
                lay_patches(layout, cells, 0, layout.chunk, found)
                data = bytes(cells)
                if found:  # seen as of its newest patch (its write's extent unknown here)
                    seen = (max(v for v, _, _, _ in found), stripe, 1)
            return data, seen
        if not by_version and not want and view.pending_version(stripe):
            # Its first write is staged but not yet committed (or was lost since): a
            # staged copy anywhere says the former, and the stripe is still a hole.
            first = view.pending_version(stripe)
            staged, _, _, _, _ = await self._gather(view, stripe, first, range(policy.width))
            if staged:
                return bytes(layout.stripe_data), (0, 0, 0)
        if not by_version and not view.is_written(stripe):
            # A hole: the region says no write of it was ever committed. (A written
            # stripe's "no such fragment" is a failure, never this.)
            return bytes(layout.stripe_data), (0, 0, 0)
        lost = {i: why for i, (why, _) in failed.items()}
        for version, frags in by_version.items():
            for i in frags:
                lost.setdefault(i, f"version {version} has too few peers to decode")
        for i in missing:
            lost.setdefault(i, "no copy")
        # Could nodes that are merely unreachable still make up k of one version?
        best = max(map(len, by_version.values()), default=0)
        maybe = sum(1 for _, gone in failed.values() if not gone)
        gone = best + maybe < k and view.is_written(stripe)
        error = DataLostError if gone else DataUnavailableError
        raise error(view.name, layout.slab_of(stripe), stripe, lost, k)

    async def _gather(
        self,
        view: RegionView,
        stripe: int,
        want: int,
        indexes: Iterable[int],
        span: tuple[int, int] | None = None,
    ) -> tuple[
        dict[int, dict[int, bytes]],
        Failures,
        list[int],
        dict[int, tuple[int, int]],
        dict[int, bool],
    ]:
        """Whole fragments (or bytes ``span`` = (offset, length) of each) from ``indexes``,
        without their page patches (bytes to decode from), asked all at once; stops as
        soon as one version has k of them (late binding: slow nodes are not waited for).
        Also which versions have page patches to lay over the decoded bytes."""
        layout = view.layout
        k = layout.policy.k
        offset, size = span if span is not None else (0, layout.fragment_size)

        async def one(i: int) -> tuple[int, Outcome]:
            return i, await self.fetch(
                view,
                stripe,
                i,
                offset,
                size,
                DEGRADED_TIMEOUT,
                avoid_suspects=False,
                want=want,
                raw=True,
            )

        tasks = [asyncio.ensure_future(one(i)) for i in indexes]
        by_version: dict[int, dict[int, bytes]] = {}
        extents: dict[int, tuple[int, int]] = {}
        failed: Failures = {}
        missing: list[int] = []
        patched: dict[int, bool] = {}
        try:
            for fut in asyncio.as_completed(tasks):
                i, outcome = await fut
                if isinstance(outcome, Got):
                    frags = by_version.setdefault(outcome.version, {})
                    frags[i] = bytes(outcome.data)
                    extents[outcome.version] = outcome.extent
                    if outcome.pending:
                        patched[outcome.version] = True
                    if len(frags) >= k:
                        break
                elif isinstance(outcome, Missing):
                    missing.append(i)
                else:
                    failed[i] = (outcome.why, outcome.gone)
        finally:
            for t in tasks:
                t.cancel()
        return by_version, failed, missing, extents, patched

    async def patches(
        self, view: RegionView, stripe: int, frags: Iterable[int], after: int, asof: int
    ) -> list[PatchEntry] | None:
        return await read_patches(self.pool, view, stripe, frags, after, asof)

    async def read(self, view: RegionView, offset: int, length: int, want: int = 0) -> bytearray:
        out = bytearray(length)
        await self.read_into(view, offset, memoryview(out), want)
        return out

    async def read_into(
        self, view: RegionView, offset: int, out: memoryview, want: int = 0
    ) -> None:
        pieces = list(view.layout.pieces(offset, len(out)))
        if len(pieces) == 1:
            p = pieces[0]
            await self.read_piece(view, p.stripe, p.start, p.length, out, want)
            return

        async def read(p: Piece, version: int) -> Seen:
            return await self.read_piece(
                view, p.stripe, p.start, p.length, out[p.pos : p.pos + p.length], version
            )

        seen = await windowed(
            (lambda p=p: read(p, want) for p in pieces),  # type: ignore[misc]
            READ_WINDOW,
        )
        if want:
            return
        # A write is committed stripe by stripe: if this read saw a write in one stripe and
        # not yet in another it covered, read again, so that no write shows torn.
        by_stripe = {p.stripe: i for i, p in enumerate(pieces)}
        for attempt in range(TORN_RETRIES):
            stale: dict[int, int] = {}
            for version, first, count in set(seen):
                for stripe in range(first, first + count):
                    i = by_stripe.get(stripe)
                    # A stripe truncated since that write (its floor is newer) lost it
                    # for good: seeing it without the write is not a torn read.
                    if (
                        version
                        and i is not None
                        and seen[i][0] < version
                        and view.min_version(stripe) <= version
                    ):
                        stale[i] = max(stale.get(i, 0), version)
            if not stale:
                return
            if attempt % 2 == 0:
                # Most likely its commit is still on its way: read those stripes at that
                # version (every node staged it), unless a newer one replaced it since.
                for i, version in stale.items():
                    try:
                        seen[i] = await read(pieces[i], version)
                    except DataUnavailableError:
                        seen[i] = await read(pieces[i], 0)
            else:  # writes keep landing: read everything again, as close together as can be
                seen = await windowed(
                    (lambda p=p: read(p, 0) for p in pieces),  # type: ignore[misc]
                    READ_WINDOW,
                )
        raise ClusterError(
            f"region {view.name!r}: writes kept landing on the range being read and no "
            f"consistent view was had after {TORN_RETRIES} tries; retry the read"
        )

    # -- writing ----------------------------------------------------------------
