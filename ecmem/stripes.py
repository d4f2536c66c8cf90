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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from crc32c import crc32c

from . import checksum, wire
from .conn import ConnectionPool
from .errors import (
    ClusterError,
    DataUnavailableError,
    EcmemError,
    Fenced,
    NodeTimeout,
    NodeUnavailable,
    NoSpaceError,
    RemoteError,
)
from .layout import Layout

log = logging.getLogger(__name__)

Placement = list[tuple[str, str]]
READ_WINDOW = 16  # stripes in flight per read call
WRITE_WINDOW = 12  # stripes in flight per write call
# A healthy read waits this long before reading around a fragment; a degraded read
# asks every fragment and takes the first k, so it can afford to wait longer.
READ_TIMEOUT = 2.0
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


@dataclass(frozen=True, slots=True)
class Missing:
    """The node, in the life we placed data on, has no such fragment: never written."""


@dataclass(frozen=True, slots=True)
class Failed:
    why: str


Outcome = Got | Missing | Failed


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
) -> Outcome:
    """Judge a node's answer to a Get: the bytes, checked against their sums; or why not."""
    node_id, incarnation = view.placement(stripe)[index]
    if incarnation_seen != incarnation:
        return Failed(f"node {node_id} restarted without its data")
    if isinstance(reply, wire.Error):
        if reply.code == wire.E_NOT_FOUND:
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
    bad = checksum.bad_pages_in(segments, reply.crcs, reply.first_page)
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
        return Failed(f"node {node_id}: checksum mismatch on pages {bad[:4]}")
    if reply.version < view.min_version(stripe):
        return Missing()
    if isinstance(payload, tuple):
        return Got(reply.version, payload[1])
    rel = offset - reply.first_page * checksum.PAGE
    data = memoryview(payload)[rel : rel + length]
    if len(data) != length:
        return Failed(f"node {node_id}: short read ({len(data)} of {length} bytes)")
    if into is not None:
        into[:] = data
        data = into
    return Got(reply.version, data)


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
    ) -> Outcome:
        """Bytes [offset, offset+length) of one fragment, checked against their sums.

        With ``into`` (``length`` bytes) they are received straight into it; after a
        failure its contents are undefined.
        """
        node_id, incarnation = view.placement(stripe)[index]
        if avoid_suspects and self.pool.is_suspect(node_id):
            return Failed(f"node {node_id} is slow to answer")
        try:
            conn, reply = await self.pool.request(
                node_id, wire.Get(view.id, stripe, index, offset, length), timeout, into
            )
        except NodeTimeout as exc:
            self.pool.suspect(node_id)
            return Failed(str(exc))
        except NodeUnavailable as exc:
            return Failed(str(exc))
        return check_reply(view, stripe, index, offset, length, conn.incarnation, reply, into)

    async def read_piece(
        self, view: RegionView, stripe: int, start: int, length: int, out: memoryview
    ) -> None:
        """Fill ``out`` (``length`` bytes) with bytes [start, start+length) of a stripe."""
        ranges = list(view.layout.data_ranges(stripe, start, length))
        if len(ranges) == 1:
            i, off, n, pos = ranges[0]
            outcomes = [await self.fetch(view, stripe, i, off, n, into=out[pos : pos + n])]
        else:
            outcomes = await asyncio.gather(
                *(
                    self.fetch(view, stripe, i, off, n, into=out[pos : pos + n])
                    for i, off, n, pos in ranges
                )
            )
        versions = {o.version if isinstance(o, Got) else 0 for o in outcomes}
        if len(versions) == 1 and not any(isinstance(o, Failed) for o in outcomes):
            for (_, _, n, pos), o in zip(ranges, outcomes, strict=True):
                if isinstance(o, Missing):
                    out[pos : pos + n] = bytes(n)
            return
        data = await self.read_degraded(view, stripe)
        out[:length] = memoryview(data)[start : start + length]

    async def read_degraded(self, view: RegionView, stripe: int) -> bytes:
        """The whole stripe, from any k fragments of one version."""
        layout = view.layout
        policy = layout.policy
        width, k, size = policy.width, policy.k, layout.fragment_size

        async def one(i: int) -> tuple[int, Outcome]:
            return i, await self.fetch(
                view, stripe, i, 0, size, DEGRADED_TIMEOUT, avoid_suspects=False
            )

        tasks = [asyncio.ensure_future(one(i)) for i in range(width)]
        by_version: dict[int, dict[int, bytes]] = {}
        failed: dict[int, str] = {}
        missing: list[int] = []
        winner: int | None = None
        try:
            for fut in asyncio.as_completed(tasks):
                i, outcome = await fut
                if isinstance(outcome, Got):
                    frags = by_version.setdefault(outcome.version, {})
                    frags[i] = bytes(outcome.data)
                    if len(frags) >= k:
                        winner = outcome.version
                        break
                elif isinstance(outcome, Missing):
                    missing.append(i)
                else:
                    failed[i] = outcome.why
        finally:
            for t in tasks:
                t.cancel()
        if winner is not None:
            log.debug(
                "region %s slab %d stripe %d: degraded read decoded from fragments %s",
                view.name,
                layout.slab_of(stripe),
                stripe,
                sorted(by_version[winner]),
            )
            return policy.decode(by_version[winner], layout.chunk)
        if missing:
            # A node that held its data all along never received this stripe, so
            # no write of it was ever acknowledged: it reads as zeros.
            return bytes(layout.stripe_data)
        lost = dict(failed)
        for version, frags in by_version.items():
            for i in frags:
                lost.setdefault(i, f"version {version} has too few peers to decode")
        raise DataUnavailableError(view.name, layout.slab_of(stripe), stripe, lost, k)

    async def read(self, view: RegionView, offset: int, length: int) -> bytearray:
        out = bytearray(length)
        await self.read_into(view, offset, memoryview(out))
        return out

    async def read_into(self, view: RegionView, offset: int, out: memoryview) -> None:
        pieces = list(view.layout.pieces(offset, len(out)))
        if len(pieces) == 1:
            p = pieces[0]
            await self.read_piece(view, p.stripe, p.start, p.length, out)
            return
        await windowed(
            (
                lambda p=p: self.read_piece(  # type: ignore[misc]
                    view, p.stripe, p.start, p.length, out[p.pos : p.pos + p.length]
                )
                for p in pieces
            ),
            READ_WINDOW,
        )

    # -- writing ----------------------------------------------------------------

    async def write_stripe(
        self,
        view: RegionView,
        stripe: int,
        data: bytes | bytearray | memoryview,
        version: int,
        valid: int | None = None,
    ) -> None:
        """Encode and store one stripe. Bytes from ``valid`` on are zeros, so each
        fragment is sent, and kept, only up to where its own zeros begin."""
        layout = view.layout
        frags = layout.policy.encode(data)
        placement = view.placement(stripe)
        size = layout.fragment_size
        keep = layout.stored_lengths(layout.stripe_data if valid is None else valid)
        parts = [memoryview(f)[:n] for f, n in zip(frags, keep, strict=True)]
        crcs = [crc32c(p) for p in parts]

        async def put(i: int) -> None:
            node_id, incarnation = placement[i]
            conn, reply = await self.pool.request(
                node_id, wire.Put(view.id, stripe, i, version, size, crcs[i], parts[i])
            )
            if conn.incarnation != incarnation:
                raise NodeUnavailable(
                    f"node {node_id} restarted without its data; its fragments of region "
                    f"{view.name!r} must be rebuilt before the region takes writes",
                    node=node_id,
                )
            if isinstance(reply, wire.Error):
                if reply.code == wire.E_NO_SPACE:
                    raise NoSpaceError(f"node {node_id}: {reply.message}")
                if reply.code == wire.E_FENCED:
                    raise Fenced(f"region {view.name!r}: node {node_id}: {reply.message}")
                raise RemoteError(
                    f"node {node_id}: {reply.message}", node=node_id, remote_code=reply.code
                )

        results = await asyncio.gather(*(put(i) for i in range(len(frags))), return_exceptions=True)
        errors = {i: r for i, r in enumerate(results) if isinstance(r, BaseException)}
        if errors:
            for r in errors.values():
                if not isinstance(r, EcmemError) or isinstance(r, Fenced):
                    raise r
            first = next(iter(errors.values()))
            detail = "; ".join(f"fragment {i}: {e}" for i, e in sorted(errors.items()))
            msg = (
                f"region {view.name!r} slab {layout.slab_of(stripe)} stripe {stripe}: write not "
                f"stored in full ({detail}); the stripe keeps its old or new contents, "
                "retry once the nodes are back (ecmem status)"
            )
            err: EcmemError
            if isinstance(first, NoSpaceError):
                err = NoSpaceError(msg)
            else:
                err = NodeUnavailable(msg, node=getattr(first, "node", ""))
            raise err from first

    async def write(
        self,
        view: RegionView,
        offset: int,
        data: bytes | bytearray | memoryview,
        size: int,
        next_version: Callable[[], int],
    ) -> None:
        """Write ``data`` at ``offset``; bytes at or past ``size`` are treated as unset."""
        src = memoryview(data).cast("B")
        sd = view.layout.stripe_data

        async def piece(stripe: int, start: int, length: int, pos: int) -> None:
            chunk = src[pos : pos + length]
            if start == 0 and length == sd:
                await self.write_stripe(view, stripe, chunk, next_version())
                return
            base_off = stripe * sd
            if base_off >= size:
                base = bytearray(sd)
            else:
                base = await self.read(view, base_off, sd)
                valid = size - base_off
                if valid < sd:
                    base[valid:] = bytes(sd - valid)
            base[start : start + length] = chunk
            end = min(sd, max(size - base_off, start + length))
            await self.write_stripe(view, stripe, base, next_version(), end)

        await windowed(
            (
                lambda p=p: piece(p.stripe, p.start, p.length, p.pos)  # type: ignore[misc]
                for p in view.layout.pieces(offset, len(src))
            ),
            WRITE_WINDOW,
        )

    async def delete(self, view: RegionView, from_stripe: int, epoch: int) -> list[str]:
        """Drop fragments of stripes ``from_stripe`` on, as the writer of ``epoch`` (0 when
        removing the region); returns the nodes that could not be reached."""
        nodes = sorted({n for slab in view.slabs for n, _ in slab})
        results = await asyncio.gather(
            *(self.pool.request(n, wire.Delete(view.id, from_stripe, epoch)) for n in nodes),
            return_exceptions=True,
        )
        return [n for n, r in zip(nodes, results, strict=True) if isinstance(r, BaseException)]
