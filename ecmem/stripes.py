"""What reading and writing stripes share: a region's view, the outcome of asking one
node for one fragment, and a write's stamp (readpath.py reads, writepath.py writes).

Every byte a node returns is checked against the crc32c sums its writer computed
(check_reply), and a written stripe's "no such fragment" is a failure, never zeros.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from . import checksum, extents, wire
from .errors import (
    DataUnavailableError,
    Fenced,
    NoSpaceError,
    RemoteError,
)
from .layout import Layout

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
# A small healthy read waits this long for its fragment before it also reads the column
# around it from the other fragments, and takes whichever answers first.
HEDGE_AFTER = 0.05
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
    slabs: dict[int, Placement]  # the placed slabs' (an unplaced slab was never written)
    floors: list[tuple[int, int]] = field(default_factory=list)
    # (slab, index) of handoff holders that lack older stripes -> the lowest version of
    # their copies that counts (older ones are stale leftovers)
    partial: dict[tuple[int, int], int] = field(default_factory=dict)
    min_durable: int = 0
    written: extents.Ranges = field(default_factory=list)  # stripes that hold data
    # (first, end, version): stripes first written by a write that may not be committed yet
    pending: list[tuple[int, int, int]] = field(default_factory=list)
    paged: bool = True  # page patches may exist (a writer patches only once recorded)
    synced: bool = False  # its record is sure to have a paged mark set: trust "paged"

    def is_written(self, stripe: int) -> bool:
        """Was this stripe written (so that no fragment anywhere means lost, not a hole)?"""
        return not UNSAFE_NOT_FOUND_IS_HOLE and extents.contains(self.written, stripe)

    def pending_version(self, stripe: int) -> int:
        """The write that first wrote this stripe, while it may not be committed yet."""
        return max((v for f, e, v in self.pending if f <= stripe < e), default=0)

    def durable_minimum(self) -> int:
        """Fragments of a stripe that must be staged for a write to count."""
        pol = self.layout.policy
        wanted = self.min_durable or pol.k + 1
        return max(pol.k, min(pol.width, wanted))

    def placed(self, stripe: int) -> bool:
        return self.layout.slab_of(stripe) in self.slabs

    def unplaced_hole(self, stripe: int, want: int = 0) -> bool:
        """Is the stripe a hole of a slab never written (zeros, no node to ask)? With
        ``want`` (a write seen elsewhere covered it) this record predates that write's
        placement: unavailable until the record is read again."""
        if self.placed(stripe) or self.is_written(stripe):
            return False
        if want:
            why = f"slab not placed in this reader's record, yet version {want} covers it"
            pol = self.layout.policy
            missing = dict.fromkeys(range(pol.width), why)
            raise DataUnavailableError(
                self.name, self.layout.slab_of(stripe), stripe, missing, pol.k
            )
        return True

    def placement(self, stripe: int) -> Placement:
        """The stripe's slab's holders; every slot vacant if the slab is unplaced (reads
        find nothing there; writers place a slab before they write to it)."""
        got = self.slabs.get(self.layout.slab_of(stripe))
        return got if got is not None else [("", "")] * self.layout.policy.width

    def min_version(self, stripe: int) -> int:
        if not self.floors:
            return 0
        return max((v for s, v in self.floors if s <= stripe), default=0)


@dataclass(frozen=True, slots=True)
class Got:
    version: int
    data: memoryview
    extent: tuple[int, int] = (0, 0)  # the stripes its write covered: (first, count)
    pending: int = 0  # page patches of the stripe newer than ``version`` not laid over
    patched: int = 0  # the newest page patch laid over (``extent`` is then its write's)

    @property
    def seen(self) -> int:
        """The write a reader has seen of the stripe: its version, or a newer patch's."""
        return max(self.version, self.patched)


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
                # A handoff that lacks older stripes: its former holder may have it still.
                return Failed(f"node {node_id} took this fragment over and has no copy yet")
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
    if reply.version < view.partial.get((view.layout.slab_of(stripe), index), 0):
        # A handoff to a node that held this fragment before and missed writes since.
        return Failed(f"node {node_id} took this fragment over and has only an older copy")
    if reply.version < view.min_version(stripe):
        if view.is_written(stripe):
            return Failed(f"node {node_id} holds only a copy older than a truncation", gone=True)
        return Missing()
    extent = (reply.wfirst, reply.wcount)
    if isinstance(payload, tuple):
        return Got(reply.version, payload[1], extent, reply.pending, reply.patched)
    rel = offset - reply.first_page * checksum.PAGE
    data = memoryview(payload)[rel : rel + length]
    if len(data) != length:
        return Failed(f"node {node_id}: short read ({len(data)} of {length} bytes)")
    if into is not None:
        into[:] = data
        data = into
    return Got(reply.version, data, extent, reply.pending, reply.patched)


Replacer = Callable[["RegionView", int, int, str], Awaitable[bool]]


@dataclass
class Stamp:
    """What every fragment of one write carries: its version, its extent, the writer's
    commit points, and where to read the writer's own uncommitted stripes."""

    version: int
    write: tuple[int, int, int]  # first stripe, last stripe, end byte
    commit: Callable[[], tuple[int, int]]  # (lac, base) at the time of sending
    latest: Callable[[int], int]  # stripe -> version to read it at (0: committed)
    # stripe -> the newest page patch this writer staged on it and not yet folded (0: none)
    patched: Callable[[int], int] = lambda _stripe: 0
    patches: dict[int, int] = field(default_factory=dict)  # stripe -> bytes sent as a patch
    may_patch: bool = True  # False for a fold: it rewrites the stripe whole
    nodes: set[str] = field(default_factory=set)  # nodes sent a part of it to stage
    landed: set[str] = field(default_factory=set)  # of those, the ones that did not refuse
    refused: set[str] = field(default_factory=set)  # of those, the ones that answered no
    patched_somewhere: set[int] = field(default_factory=set)  # stripes a patch of it landed on
    doomed: bool = False  # a stripe of it has fewer than k fragments and no patch: never kept


def raise_for(view: RegionView, node_id: str, reply: wire.Message) -> None:
    """Turn a node's error answer to a write into the matching exception."""
    if not isinstance(reply, wire.Error):
        return
    if reply.code == wire.E_NO_SPACE:
        raise NoSpaceError(f"node {node_id}: {reply.message}")
    if reply.code == wire.E_FENCED:
        raise Fenced(f"region {view.name!r}: node {node_id}: {reply.message}")
    raise RemoteError(f"node {node_id}: {reply.message}", node=node_id, remote_code=reply.code)
