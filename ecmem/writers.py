"""The writer side of a region: lease, epoch, and the order of its writes.

One client at a time writes a region. It holds the region's lease in
ZooKeeper, has bumped the region's epoch with a versioned set, has fenced the
region's nodes at that epoch (so a writer it replaced cannot store another
byte) and has recovered what that writer left staged. Each of its writes gets
the next version, (epoch, seq), carried by every fragment of the write.

A write is staged on all its fragments' nodes, then committed: the commit
point (last-add-confirmed) is the newest version below which every write is
fully staged; it travels with later fragments and in explicit commit rounds,
and nodes promote staged fragments up to it. See docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from kazoo.client import KazooClient

from . import extents, wire
from .conn import ConnectionPool
from .errors import Fenced, ProtocolError, WriterStopped
from .meta.catalog import MetadataStore
from .meta.model import NodeInfo, RegionMeta
from .pagelog import Unfolded
from .recovery import Pending
from .regions import RegionCache
from .stripes import Stamp
from .writepath import StripeIO

T = TypeVar("T")
Placement = list[tuple[str, str]]


_FENCING = threading.Lock()


class StripeLocks:
    """Writes of one writer that share a stripe stage one after the other, in the order
    they queued (the later reads the stripe at the earlier's version); writes of other
    stripes go at once. Queueing is synchronous, so a caller can take its place under
    another lock and wait outside it."""

    def __init__(self) -> None:
        self._tail: dict[int, asyncio.Future[None]] = {}
        # Claims of every stripe from a first one on (a truncation's): by claim, that
        # stripe. A sparse region's end may lie 2**40 stripes past its last write.
        self._cuts: dict[asyncio.Future[None], int] = {}

    def enqueue(self, first: int, last: int) -> Ticket:
        before = {self._tail[s] for s in range(first, last + 1) if s in self._tail}
        before |= {f for f, cut in self._cuts.items() if last >= cut}
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for stripe in range(first, last + 1):
            self._tail[stripe] = mine
        return Ticket(self, first, last, before, mine)

    def busy(self, stripe: int) -> bool:
        """Is a write of this stripe queued or under way?"""
        return stripe in self._tail or any(stripe >= cut for cut in self._cuts.values())

    def forget(self, first: int, last: int, mine: asyncio.Future[None]) -> None:
        """No write queues behind ``mine`` on these stripes any more."""
        self._cuts.pop(mine, None)
        for stripe in range(first, last + 1):
            if self._tail.get(stripe) is mine:
                del self._tail[stripe]

    async def claim(self, first: int, last: int) -> Ticket:
        ticket = self.enqueue(first, last)
        await ticket.ready()
        return ticket

    async def claim_from(self, first: int) -> Ticket:
        """Every stripe from ``first`` on, once the writes queued on them are done."""
        before = {f for s, f in self._tail.items() if s >= first} | set(self._cuts)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._cuts[mine] = first
        ticket = Ticket(self, first, first - 1, before, mine)
        await ticket.ready()
        return ticket

    @contextlib.asynccontextmanager
    async def hold(self, first: int, last: int, held: bool = False) -> AsyncIterator[None]:
        """Hold the stripes for a block (``held``: the caller holds them already)."""
        if held:
            yield
            return
        ticket = await self.claim(first, last)
        try:
            yield
        finally:
            ticket.release()


@dataclass
class Ticket:
    locks: StripeLocks
    first: int
    last: int
    before: set[asyncio.Future[None]]
    mine: asyncio.Future[None]
    stamp: Any = None  # the write's Stamp, when it took its version on queueing

    async def ready(self) -> None:
        """Until every write queued earlier on these stripes is done."""
        try:
            if self.before:
                await asyncio.wait(self.before)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        self.locks.forget(self.first, self.last, self.mine)
        if self.mine.done():
            return
        pending = {f for f in self.before if not f.done()}
        if pending:
            # Given up before its turn: later writes still wait for the earlier ones.
            waiter = asyncio.ensure_future(asyncio.wait(pending))
            waiter.add_done_callback(self._finish)
        else:
            self.mine.set_result(None)

    def _finish(self, _: object) -> None:
        if not self.mine.done():
            self.mine.set_result(None)


class State(enum.Enum):
    TAKING_OVER = "taking over"  # lease held, epoch raised; fencing and recovering
    WRITING = "writing"
    STOPPED = "stopped"  # fenced off by a newer writer, or a write failed: no more writes
    RELEASED = "released"  # the lease was given back


# The transitions a writer may make; anything else is a bug in its caller.
ALLOWED: dict[State, set[State]] = {
    State.TAKING_OVER: {State.WRITING, State.STOPPED, State.RELEASED},
    State.WRITING: {State.STOPPED, State.RELEASED},
    State.STOPPED: {State.RELEASED},
    State.RELEASED: set(),
}


@dataclass
class Writer:
    name: str
    epoch: int
    state: State = State.TAKING_OVER
    base: int = 0  # the newest older-epoch version our recovery kept
    seq: int = 0
    files: int = 0  # region files open for writing through this client
    sticky: bool = False  # taken by pwrite/truncate: held until released or closed
    lost: str = ""  # why this writer may not write any more
    failed_itself: bool = False  # it stopped on a write of its own, not a takeover
    committed: int = 0  # the commit point of the last commit round that succeeded
    told: int = 0  # the newest commit point sent to any node (a round's or a write's)
    inflight: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)  # writes that failed: commit barriers
    latest: dict[int, int] = field(default_factory=dict)  # stripe -> newest staged version
    patched: Unfolded = field(default_factory=Unfolded)  # page patches not yet folded
    dirty: dict[int, set[str]] = field(default_factory=dict)  # version -> nodes it staged on
    # dirty version -> its stripes, and the nodes that may hold a copy (not refused)
    spans: dict[int, tuple[int, int, frozenset[str]]] = field(default_factory=dict)
    stamps: dict[int, Stamp] = field(default_factory=dict)  # writes begun, not yet finished
    left: dict[str, float] = field(default_factory=dict)  # node -> when it last left a slot
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    marked: extents.Ranges = field(default_factory=list)  # recorded as written (not lost)
    unmarked: Pending = field(default_factory=list)  # staged writes' stripes, to be recorded
    marking: asyncio.Lock = field(default_factory=asyncio.Lock)
    committing: asyncio.Lock = field(default_factory=asyncio.Lock)  # one commit round at a time
    stripes: StripeLocks = field(default_factory=StripeLocks)
    published: int = 0  # the region's size as this writer last recorded it
    unpublished: dict[int, int] = field(default_factory=dict)  # version -> end past it

    @property
    def version(self) -> int:
        """The version of the newest write begun."""
        return (self.epoch << wire.SEQ_BITS) | self.seq

    def upcoming(self) -> int:
        """The version the next write will get."""
        return self.version + 1

    def ready(self) -> int:
        """The commit point: every write up to it is fully staged, and the region's
        recorded size covers it. A write that failed stays a barrier: nothing at or past
        it may ever be committed by this writer. A write past the recorded size waits
        for its size: committed without it, a crash would leave it half visible."""
        barrier = min(self.inflight | self.failed | self.unpublished.keys(), default=0)
        return barrier - 1 if barrier else self.version

    def commit_point(self) -> tuple[int, int]:
        """(commit point, base) for a message about to be sent, noted as told."""
        self.told = max(self.told, self.ready(), self.committed)
        return max(self.ready(), self.committed), self.base

    def staged(self) -> int:
        """Every write up to this version is fully staged (or one of them failed)."""
        barrier = min(self.inflight | self.failed, default=0)
        return barrier - 1 if barrier else self.version

    def size_published(self, size: int, exact: bool = False) -> None:
        """The region's recorded size is now ``size`` (``exact``: set, as a truncation
        does, and so covering every write begun before it)."""
        if exact:
            self.published = size
            self.unpublished.clear()
        else:
            self.published = max(self.published, size)
            for version in [v for v, end in self.unpublished.items() if end <= self.published]:
                del self.unpublished[version]
        self.changed.set()

    def to(self, new: State) -> None:
        if new is self.state:
            return
        if new not in ALLOWED[self.state]:
            raise ProtocolError(
                f"region {self.name!r}: a writer cannot go from {self.state.value} to "
                f"{new.value}; this is a bug, please report it"
            )
        self.state = new

    def begin(self, first: int, last: int, end: int) -> Stamp:
        self.check()
        if self.state is State.RELEASED:
            raise Fenced(
                f"region {self.name!r}: this writer gave its lease back; open the region "
                "for writing again"
            )
        self.seq += 1
        version = self.version
        self.inflight.add(version)
        if end > self.published:
            self.unpublished[version] = end
        stamp = Stamp(
            version,
            (first, last, end),
            self.commit_point,
            lambda stripe: self.latest.get(stripe, 0),
            self.patched.newest,
        )
        self.stamps[version] = stamp
        return stamp

    def finish(self, stamp: Stamp, ok: bool, why: str = "") -> None:
        self.inflight.discard(stamp.version)
        self.stamps.pop(stamp.version, None)
        if stamp.nodes:
            self.dirty[stamp.version] = stamp.nodes
            first, last, _ = stamp.write
            self.spans[stamp.version] = (first, last, frozenset(stamp.nodes - stamp.refused))
        if not ok:
            self.failed.add(stamp.version)
        if ok:
            first, last, _ = stamp.write
            for stripe in range(first, last + 1):
                if stripe in stamp.patches:
                    self.patched.add(stripe, stamp.version, stamp.patches[stripe])
                else:  # written whole or as a slice: any patches went with it
                    self.latest[stripe] = stamp.version
                    self.patched.folded(stripe)
        else:
            # Later writes must not be committed past a hole: stop here, and let the next
            # writer's recovery keep what is whole.
            self.fence_off(f"a write failed ({why})", failed_itself=True)
        self.changed.set()

    async def wait_ready(self, version: int) -> None:
        """Until every write up to ``version`` is staged (or one of them failed)."""
        while self.staged() < version:
            self.check()
            self.changed.clear()
            await self.changed.wait()
        self.check()

    def commit_targets(self, meta: RegionMeta, upto: int, everyone: bool = False) -> set[str]:
        """The nodes a commit round up to ``upto`` goes to: those of the region's placement
        sent a part of a write it covers (``everyone``: all of them)."""
        placed = {n for slab in meta.slabs.values() for n, _ in slab if n}
        self.told = max(self.told, upto)
        if everyone:
            return placed
        return placed & set().union(*(n for v, n in self.dirty.items() if v <= upto))

    def uncommitted_on(self, node: str, upto: int, slab_stripes: int) -> set[int] | None:
        """The slabs holding stripes of writes up to ``upto`` staged on ``node``: where it
        would keep a staged copy it never learned was committed, had it missed the
        commit round up to ``upto``. Its other slots hold only what it was told. None:
        every slab (a write whose stripes are not known)."""
        slabs: set[int] = set()
        for version, nodes in self.dirty.items():
            if version <= upto and node in nodes:
                if version not in self.spans:
                    return None
                first, last, _ = self.spans[version]
                slabs.update(range(first // slab_stripes, last // slab_stripes + 1))
        return slabs

    def unfit_holders(self, slab: int, slab_stripes: int) -> set[str]:
        """Nodes not to hand a slot of ``slab``: a handoff counts the holder's copies from
        above every commit point sent (``told``) on, so one holding a copy of a stripe of
        the slab above it (a write staged or in flight, not yet committed) would have it
        read as current, though a newer write of that stripe went around the node."""
        lo, hi = slab * slab_stripes, (slab + 1) * slab_stripes - 1
        writes: list[tuple[int, int, int, frozenset[str]]] = []
        for version, nodes in self.dirty.items():
            first, last, holders = self.spans.get(version, (lo, hi, frozenset(nodes)))
            writes.append((version, first, last, holders))
        for version, stamp in list(self.stamps.items()):
            first, last, _ = stamp.write
            writes.append((version, first, last, frozenset(stamp.nodes - stamp.refused)))
        writes = [w for w in writes if w[0] > self.told and w[1] <= hi and w[2] >= lo]
        out: set[str] = set()
        for version, first, last, holders in writes:
            for later, f2, l2, newer in writes:
                if later > version and f2 <= last and l2 >= first:
                    out |= holders - newer  # holds the older copy, missed the newer one
        return out

    def committed_upto(self, upto: int) -> None:
        """A commit round up to ``upto`` succeeded."""
        self.dirty = {v: n for v, n in self.dirty.items() if v > upto}
        self.spans = {v: span for v, span in self.spans.items() if v in self.dirty}
        self.committed = max(self.committed, upto)
        for stripe in [s for s, v in self.latest.items() if v <= self.committed]:
            del self.latest[stripe]

    def check(self) -> None:
        if self.lost:
            raise (WriterStopped if self.failed_itself else Fenced)(self.lost)

    def fence_off(self, why: str, failed_itself: bool = False) -> None:
        # May run on kazoo's thread while the lease is given back: any state will do.
        if self.state in (State.TAKING_OVER, State.WRITING):
            self.state = State.STOPPED
        with _FENCING:  # the first reason wins, with its kind, whichever thread it came on
            if not self.lost:
                self.failed_itself = failed_itself
                self.lost = (
                    f"region {self.name!r}: this client's writer (epoch {self.epoch}) stopped: "
                    f"{why}; reopen the region (after pwrite: release() it) to write again "
                    "(the next writer keeps every write that was acknowledged)"
                )
        self.changed.set()


class Host(Protocol):
    """What a writer session needs of its client (``AsyncClient`` is one)."""

    zk: KazooClient
    meta: MetadataStore
    io: StripeIO
    pool: ConnectionPool
    holder: dict[str, Any]
    regions: RegionCache

    async def call(self, fn: Callable[..., T], *args: Any) -> T: ...

    def live_nodes(self) -> dict[str, NodeInfo]: ...

    def placements(self, meta: RegionMeta, slabs: Iterable[int]) -> dict[int, Placement]: ...
