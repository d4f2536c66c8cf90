"""Reading and writing stripes of a region on its storage nodes.

Healthy reads fetch only the bytes asked for, straight from the data
fragments that hold them, and decode nothing. A missing, unreachable,
stale or damaged fragment switches that stripe to a degraded read: ask
every fragment, take the first k of one version, decode. Every byte is
checked against the crc32c sums its writer computed; if fewer than k good
fragments remain, the read fails naming what is lost, never returning
wrong bytes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from crc32c import crc32c

from . import checksum, extents, wire
from .conn import ConnectionPool
from .errors import (
    ClusterError,
    DataLostError,
    DataUnavailableError,
    EcmemError,
    Fenced,
    NodeTimeout,
    NodeUnavailable,
    NoSpaceError,
    RemoteError,
)
from .layout import Layout, Piece

log = logging.getLogger(__name__)
# Test-only: a build that trusts fragments without checking their sums, so the chaos
# suite can show that its corruption scenario fails without them. Never for real data.
UNSAFE_NO_CHECKSUMS = os.environ.get("ECMEM_UNSAFE_NO_CHECKSUMS") == "1"
# Test-only: a build that takes "no such fragment" for a hole even in written stripes (as
# ecmem once did), so the restart-empty chaos scenario can show it catches zeros.
UNSAFE_NOT_FOUND_IS_HOLE = os.environ.get("ECMEM_UNSAFE_NOT_FOUND_IS_HOLE") == "1"

Placement = list[tuple[str, str]]
READ_WINDOW = 16  # stripes in flight per read call
WRITE_WINDOW = 12  # stripes in flight per write call
# A healthy read waits this long before reading around a fragment; a degraded read
# asks every fragment and takes the first k, so it can afford to wait longer.
READ_TIMEOUT = 2.0
TORN_RETRIES = 10
CHURN_RETRIES = 5
DEGRADED_TIMEOUT = 5.0

T = TypeVar("T")


@dataclass
class RegionView:
    """What stripe I/O needs to know of a region."""

    name: str
    id: str
    layout: Layout
    slabs: list[Placement]
    floors: list[tuple[int, int]] = field(default_factory=list)
    partial: set[tuple[int, int]] = field(default_factory=set)
    min_durable: int = 0
    written: extents.Ranges = field(default_factory=list)  # stripes that hold data

    def is_written(self, stripe: int) -> bool:
        """Was this stripe written (so that no fragment anywhere means lost, not a hole)?"""
        return not UNSAFE_NOT_FOUND_IS_HOLE and extents.contains(self.written, stripe)

    def durable_minimum(self) -> int:
        """Fragments of a stripe that must be staged for a write to count."""
        pol = self.layout.policy
        wanted = self.min_durable or pol.k + 1
        return max(pol.k, min(pol.width, wanted))

    def placement(self, stripe: int) -> Placement:
        slab = self.layout.slab_of(stripe)
        if slab >= len(self.slabs):
            raise ClusterError(
                f"region {self.name!r}: stripe {stripe} lies in slab {slab}, which has no "
                "placement yet; this is a bug in the caller, please report it"
            )
        return self.slabs[slab]

    def min_version(self, stripe: int) -> int:
        if not self.floors:
            return 0
        return max((v for s, v in self.floors if s <= stripe), default=0)


@dataclass(frozen=True, slots=True)
class Got:
    version: int
    data: memoryview
    extent: tuple[int, int] = (0, 0)  # the stripes its write covered: (first, count)


@dataclass(frozen=True, slots=True)
class Missing:
    """The node, in the life we placed data on, has no such fragment: never written."""


@dataclass(frozen=True, slots=True)
class Failed:
    why: str
    gone: bool = False  # the node surely lacks it (not merely slow or unreachable)


Outcome = Got | Missing | Failed
Failures = dict[int, tuple[str, bool]]  # fragment index -> why, and whether surely gone
Seen = tuple[int, int, int]  # version read, and its write's first stripe and stripe count


async def windowed(jobs: Iterable[Callable[[], Awaitable[T]]], window: int) -> list[T]:
    """Run jobs with at most ``window`` in flight; first error wins, the rest are cancelled."""
    sem = asyncio.Semaphore(window)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await job()

    tasks = [asyncio.ensure_future(run(job)) for job in jobs]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        raise


def check_reply(
    view: RegionView,
    stripe: int,
    index: int,
    offset: int,
    length: int,
    incarnation_seen: str,
    reply: wire.Message,
    into: memoryview | None,
    want: int = 0,
) -> Outcome:
    """Judge a node's answer to a Get: the bytes, checked against their sums; or why not.
    With ``want``, only that version will do."""
    node_id, incarnation = view.placement(stripe)[index]
    if incarnation_seen != incarnation:
        return Failed(f"node {node_id} restarted without its data", gone=True)
    if isinstance(reply, wire.Error):
        if reply.code == wire.E_NOT_FOUND:
            if want:
                return Failed(f"node {node_id} lacks version {want}", gone=True)
            if (view.layout.slab_of(stripe), index) in view.partial:
                return Failed(
                    f"node {node_id} took this fragment over and has no copy yet", gone=True
                )
            if view.is_written(stripe):
                return Failed(f"node {node_id} has no copy of this written stripe", gone=True)
            return Missing()
        return Failed(f"node {node_id}: {reply.code}: {reply.message}")
    if not isinstance(reply, wire.Data):
        return Failed(f"node {node_id} answered a read with {type(reply).__name__}")
    expected = view.layout.fragment_size
    if reply.fragment_len != expected:
        return Failed(
            f"node {node_id}: fragment is {reply.fragment_len} bytes, expected {expected}"
        )
    payload = reply.payload
    segments = payload if isinstance(payload, tuple) else (memoryview(payload),)
    bad = (
        [] if UNSAFE_NO_CHECKSUMS else checksum.bad_pages_in(segments, reply.crcs, reply.first_page)
    )
    if bad:
        log.warning(
            "region %s stripe %d fragment %d on node %s: checksum mismatch "
            "on pages %s; reading around it",
            view.name,
            stripe,
            index,
            node_id,
            bad[:4],
        )
        return Failed(f"node {node_id}: checksum mismatch on pages {bad[:4]}", gone=True)
    if want and reply.version != want:
        return Failed(f"node {node_id} answered version {reply.version}, not {want}")
    if reply.version < view.min_version(stripe):
        if view.is_written(stripe):
            return Failed(f"node {node_id} holds only a copy older than a truncation", gone=True)
        return Missing()
    extent = (reply.wfirst, reply.wcount)
    if isinstance(payload, tuple):
        return Got(reply.version, payload[1], extent)
    rel = offset - reply.first_page * checksum.PAGE
    data = memoryview(payload)[rel : rel + length]
    if len(data) != length:
        return Failed(f"node {node_id}: short read ({len(data)} of {length} bytes)")
    if into is not None:
        into[:] = data
        data = into
    return Got(reply.version, data, extent)


Replacer = Callable[["RegionView", int, int, str], Awaitable[bool]]


class StripeIO:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    # -- reading ----------------------------------------------------------------

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
    ) -> Outcome:
        """Bytes [offset, offset+length) of one fragment's committed version (or of
        version ``want``), checked against their sums.

        With ``into`` (``length`` bytes) they are received straight into it; after a
        failure its contents are undefined.
        """
        node_id, incarnation = view.placement(stripe)[index]
        if not node_id:
            return Failed(f"no node holds fragment {index} until it is rebuilt", gone=True)
        if avoid_suspects and self.pool.is_suspect(node_id):
            return Failed(f"node {node_id} is slow to answer")
        try:
            conn, reply = await self.pool.request(
                node_id, wire.Get(view.id, stripe, index, offset, length, want), timeout, into
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
        ranges = list(view.layout.data_ranges(stripe, start, length))
        if len(ranges) == 1:
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
                    seen = (o.version, *o.extent)
                else:
                    out[pos : pos + n] = bytes(n)
            return seen
        data, seen = await self.read_degraded(view, stripe, want)
        out[:length] = memoryview(data)[start : start + length]
        return seen

    async def read_degraded(
        self, view: RegionView, stripe: int, want: int = 0
    ) -> tuple[bytes, Seen]:
        """The whole stripe, decoded from any k fragments of one version: the newest
        committed one (or ``want``); with the version read and its write's extent."""
        layout = view.layout
        policy = layout.policy
        k = policy.k
        for attempt in range(CHURN_RETRIES):
            by_version, failed, missing, spans = await self._gather(
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
            more, _, _, _ = await self._gather(view, stripe, newest, others)
            by_version[newest].update(more.get(newest, {}))
            if len(by_version[newest]) >= k:
                winner = newest
        if winner is not None:
            log.debug(
                "region %s slab %d stripe %d: degraded read decoded from fragments %s",
                view.name,
                layout.slab_of(stripe),
                stripe,
                sorted(by_version[winner]),
            )
            seen: Seen = (winner, *spans.get(winner, (0, 0)))
            return policy.decode(by_version[winner], layout.chunk), seen
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
        self, view: RegionView, stripe: int, want: int, indexes: Iterable[int]
    ) -> tuple[dict[int, dict[int, bytes]], Failures, list[int], dict[int, tuple[int, int]]]:
        """Whole fragments from ``indexes``, asked all at once; stops as soon as one version
        has k of them (late binding: slow nodes are not waited for)."""
        layout = view.layout
        k, size = layout.policy.k, layout.fragment_size

        async def one(i: int) -> tuple[int, Outcome]:
            return i, await self.fetch(
                view, stripe, i, 0, size, DEGRADED_TIMEOUT, avoid_suspects=False, want=want
            )

        tasks = [asyncio.ensure_future(one(i)) for i in indexes]
        by_version: dict[int, dict[int, bytes]] = {}
        extents: dict[int, tuple[int, int]] = {}
        failed: Failures = {}
        missing: list[int] = []
        try:
            for fut in asyncio.as_completed(tasks):
                i, outcome = await fut
                if isinstance(outcome, Got):
                    frags = by_version.setdefault(outcome.version, {})
                    frags[i] = bytes(outcome.data)
                    extents[outcome.version] = outcome.extent
                    if len(frags) >= k:
                        break
                elif isinstance(outcome, Missing):
                    missing.append(i)
                else:
                    failed[i] = (outcome.why, outcome.gone)
        finally:
            for t in tasks:
                t.cancel()
        return by_version, failed, missing, extents

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

    async def write_stripe(
        self,
        view: RegionView,
        stripe: int,
        data: bytes | bytearray | memoryview,
        stamp: Stamp,
        valid: int | None = None,
        replace: Replacer | None = None,
    ) -> None:
        """Encode one stripe and stage its fragments on its nodes. Bytes from ``valid`` on
        are zeros, so each fragment is sent, and kept, only up to where its zeros begin.
        ``replace`` gives the fragment of a node that fails the write another holder:
        True if one took it over (the view is updated), False if it is left vacant."""
        layout = view.layout
        frags = layout.policy.encode(data)
        placement = view.placement(stripe)
        size = layout.fragment_size
        keep = layout.stored_lengths(layout.stripe_data if valid is None else valid)
        parts = [memoryview(f)[:n] for f, n in zip(frags, keep, strict=True)]
        crcs = [crc32c(p) for p in parts]
        first, last, end = stamp.write
        lac, base = stamp.commit()

        async def put(i: int) -> None:
            node_id, incarnation = placement[i]
            if not node_id:
                raise NodeUnavailable(f"no node holds fragment {i} (vacant until rebuilt)")
            msg = wire.Put(
                view.id,
                stripe,
                i,
                stamp.version,
                size,
                crcs[i],
                first,
                last,
                end,
                lac,
                base,
                parts[i],
            )
            conn, reply = await self.pool.request(node_id, msg)
            if conn.incarnation != incarnation:
                raise NodeUnavailable(
                    f"node {node_id} restarted without its data; its fragments of region "
                    f"{view.name!r} must be rebuilt before the region takes writes",
                    node=node_id,
                )
            raise_for(view, node_id, reply)

        async def attempt(indexes: list[int]) -> dict[int, BaseException]:
            results = await asyncio.gather(*(put(i) for i in indexes), return_exceptions=True)
            errors = {i: r for i, r in zip(indexes, results, strict=True) if r is not None}
            for r in errors.values():
                if not isinstance(r, EcmemError) or isinstance(r, Fenced):
                    raise r
            return errors

        errors = await attempt(list(range(len(parts))))
        lost = [i for i, e in errors.items() if isinstance(e, NodeUnavailable)]
        if lost and replace is not None:
            # A handoff node takes the fragment over; with none to be had, the slot is
            # left vacant (its old holder can never be trusted for this slab again).
            moved = []
            for i in lost:
                if await replace(view, stripe, i, str(errors[i])):
                    moved.append(i)
            if moved:
                retried = await attempt(moved)
                for i in moved:
                    if i in retried:
                        errors[i] = retried[i]
                    else:
                        del errors[i]
        staged = len(parts) - len(errors)
        if not errors:
            return
        detail = "; ".join(f"fragment {i}: {e}" for i, e in sorted(errors.items()))
        if staged >= view.durable_minimum() and all(
            isinstance(e, NodeUnavailable) for e in errors.values()
        ):
            log.warning(
                "region %s slab %d stripe %d: written degraded, %d of %d fragments (%s); "
                "it is rebuilt when nodes come back or are replaced",
                view.name,
                layout.slab_of(stripe),
                stripe,
                staged,
                len(parts),
                detail,
            )
            return
        msg = (
            f"region {view.name!r} slab {layout.slab_of(stripe)} stripe {stripe}: write not "
            f"stored ({staged} of {len(parts)} fragments, {view.durable_minimum()} needed: "
            f"{detail}); it was not applied"
        )
        first_error = next(iter(errors.values()))
        err: EcmemError
        if isinstance(first_error, NoSpaceError):
            err = NoSpaceError(msg)
        else:
            err = NodeUnavailable(msg, node=getattr(first_error, "node", ""))
        raise err from first_error

    async def write(
        self,
        view: RegionView,
        offset: int,
        data: bytes | bytearray | memoryview,
        size: int,
        stamp: Stamp,
        replace: Replacer | None = None,
    ) -> None:
        """Stage ``data`` at ``offset`` as one write, every stripe at ``stamp.version``;
        bytes at or past ``size`` are treated as unset."""
        src = memoryview(data).cast("B")
        sd = view.layout.stripe_data

        async def piece(stripe: int, start: int, length: int, pos: int) -> None:
            chunk = src[pos : pos + length]
            if start == 0 and length == sd:
                await self.write_stripe(view, stripe, chunk, stamp, None, replace)
                return
            base_off = stripe * sd
            if base_off >= size:
                base = bytearray(sd)
            else:
                # Our own writes may not be committed yet: read the newest we staged.
                base = await self.read(view, base_off, sd, stamp.latest(stripe))
                valid = size - base_off
                if valid < sd:
                    base[valid:] = bytes(sd - valid)
            base[start : start + length] = chunk
            end = min(sd, max(size - base_off, start + length))
            await self.write_stripe(view, stripe, base, stamp, end, replace)

        await windowed(
            (
                lambda p=p: piece(p.stripe, p.start, p.length, p.pos)  # type: ignore[misc]
                for p in view.layout.pieces(offset, len(src))
            ),
            WRITE_WINDOW,
        )

    async def broadcast(
        self, nodes: Iterable[str], msg: wire.Message
    ) -> dict[str, wire.Message | BaseException]:
        """Send one request to several nodes at once; each answer or exception by node."""
        names = sorted(set(nodes))
        results = await asyncio.gather(
            *(self.pool.request(n, msg) for n in names), return_exceptions=True
        )
        return {
            n: r if isinstance(r, BaseException) else r[1]
            for n, r in zip(names, results, strict=True)
        }

    async def delete(self, view: RegionView, from_stripe: int, epoch: int) -> list[str]:
        """Drop fragments of stripes ``from_stripe`` on, as the writer of ``epoch`` (0 when
        removing the region); returns the nodes that could not be reached."""
        nodes = [n for slab in view.slabs for n, _ in slab]
        answers = await self.broadcast(nodes, wire.Delete(view.id, from_stripe, epoch))
        return [n for n, r in answers.items() if isinstance(r, BaseException)]


@dataclass
class Stamp:
    """What every fragment of one write carries: its version, its extent, the writer's
    commit points, and where to read the writer's own uncommitted stripes."""

    version: int
    write: tuple[int, int, int]  # first stripe, last stripe, end byte
    commit: Callable[[], tuple[int, int]]  # (lac, base) at the time of sending
    latest: Callable[[int], int]  # stripe -> version to read it at (0: committed)


def raise_for(view: RegionView, node_id: str, reply: wire.Message) -> None:
    """Turn a node's error answer to a write into the matching exception."""
    if not isinstance(reply, wire.Error):
        return
    if reply.code == wire.E_NO_SPACE:
        raise NoSpaceError(f"node {node_id}: {reply.message}")
    if reply.code == wire.E_FENCED:
        raise Fenced(f"region {view.name!r}: node {node_id}: {reply.message}")
    raise RemoteError(f"node {node_id}: {reply.message}", node=node_id, remote_code=reply.code)
