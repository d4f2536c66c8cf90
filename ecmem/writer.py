"""A client's hold on one region's writing: the write protocol (docs/protocol.md).

A ``WriterSession`` is what a client gets for a region once it holds the region's
write lease: it raised the region's epoch, fenced the region's nodes at it (so a
writer it replaced cannot store another byte) and recovered what that writer left
staged. Through it go the region's writes (staged on every fragment's node, their
stripes recorded as written, then committed), commit rounds, handoffs to other
nodes when a holder fails and growth into new slabs (size changes: sizing.py).
Region files, the mount, the rebuilder, the scrubber and the chaos suite all
write through this one seam. The decisions that carry the guarantees are pure
functions in recovery.py; the state table is in writers.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import extents, folding, handoff, pagelog, wire, writepath
from .errors import (
    ClusterError,
    CoordinationError,
    EcmemError,
    Fenced,
    NodeUnavailable,
    WriteInDoubt,
)
from .layout import Layout
from .meta import lease
from .meta.model import RegionMeta
from .recovery import (
    Pending,
    Staged,
    choose_kept,
    fence_quorum,
    record_writes,
    settle_written,
    unfenced_slabs,
)
from .regions import make_view
from .stripes import RegionView
from .writers import Host, State, Ticket, Writer

log = logging.getLogger(__name__)
T = TypeVar("T")
Placement = list[tuple[str, str]]

# Test-only: a build with fencing switched off, so the chaos suite can show that its
# stale-writer scenario fails without it. Never set it for real data.
UNSAFE_NO_FENCING = os.environ.get("ECMEM_UNSAFE_NO_FENCING") == "1"
PENDING_LIMIT = 32  # first writes awaiting a commit round before one is forced
MARK_TRIES = 5  # recording written stripes survives a ZooKeeper hiccup of about 2 s


@dataclass
class WriterSession(Writer):
    host: Any = field(default=None, repr=False, compare=False)
    placing: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)
    growing: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)
    unconfirmed: set[int] = field(default_factory=set, repr=False, compare=False)
    unlost: list[tuple[int, int, int]] = field(default_factory=list, repr=False, compare=False)
    answered: set[str] = field(default_factory=set, repr=False, compare=False)  # fenced nodes
    # (slab, index) of vacant slots -> when a holder was last looked for
    vacant_tried: dict[tuple[int, int], float] = field(default_factory=dict, repr=False)
    # bringing handed-off slots up to date (ecmem/catchup.py), and not before when
    catching_up: asyncio.Future[None] | None = field(default=None, repr=False, compare=False)
    catch_up_after: float = 0.0

    # -- taking a region over ---------------------------------------------------------

    @classmethod
    async def take_over(cls, host: Host, name: str, timeout: float | None) -> WriterSession:
        """Take the region's lease (waiting ``timeout`` seconds for it), raise its epoch,
        fence its nodes and recover what the previous writer left."""
        await host.call(lease.acquire, host.zk, host.meta.paths, name, host.holder, timeout)
        try:

            def bump(meta: RegionMeta) -> RegionMeta:
                meta.epoch += 1
                return meta

            meta = await host.regions.update(name, bump)
            w = cls(name, meta.epoch, marked=extents.minus(meta.written, meta.lost), host=host)
            w.patched.stripe_data = Layout.of(
                meta.policy, meta.chunk, meta.slab_stripes
            ).stripe_data
            w.published = meta.size
            lac = await w.fence(meta, meta.slabs)
            await w.recover(meta, lac)
        except BaseException:
            await host.call(lease.release, host.zk, host.meta.paths, name)
            raise
        w.to(State.WRITING)
        log.info("writing region %s at epoch %d", name, w.epoch)
        return w

    async def release(self) -> None:
        """Give the lease back; the session takes no more writes."""
        if self.state is not State.RELEASED:
            self.to(State.RELEASED)
            if self.catching_up is not None:
                self.catching_up.cancel()
            await self.host.call(lease.release, self.host.zk, self.host.meta.paths, self.name)
            for tally in (writepath.DEGRADED, handoff.PLACED):
                tally.flush(f"region {self.name}")

    def check_epoch(self, m: RegionMeta) -> None:
        """Inside a versioned update of the region: stop if a newer writer took over."""
        if m.epoch != self.epoch and not UNSAFE_NO_FENCING:
            self.fence_off(f"a writer of epoch {m.epoch} took the region over")
            self.check()

    async def fence(self, meta: RegionMeta, slabs: dict[int, Placement]) -> int:
        """Make the nodes of ``slabs`` refuse older writers; returns the newest commit
        point they know. A write needs ``min_durable`` nodes of each stripe, so fencing
        all but fewer than that many nodes of every slab keeps an old writer out."""
        answers = await self.host.io.broadcast(
            [n for slab in slabs.values() for n, _ in slab if n], wire.Fence(meta.id, self.epoch)
        )
        fenced, lac = self.answered, 0
        for node, reply in answers.items():
            if isinstance(reply, wire.Error) and reply.code == wire.E_FENCED:
                self.fence_off(reply.message)
                self.check()
            if isinstance(reply, wire.Ok):
                fenced.add(node)
                lac = max(lac, int(reply.info.get("lac", 0)))
        view = make_view(meta)
        need = fence_quorum(view.layout.policy.width, view.durable_minimum())
        numbers = sorted(slabs)
        nodes = [[n for n, _ in slabs[s]] for s in numbers]
        for i in unfenced_slabs(nodes, fenced, need):
            raise ClusterError(
                f"region {meta.name!r}: cannot fence slab {numbers[i]}: {need} of its nodes "
                f"must answer, only {sorted(n for n in nodes[i] if n in fenced)} did; bring "
                "nodes back (ecmem nodes) and reopen"
            )
        return lac

    async def recover(self, meta: RegionMeta, lac: int) -> None:
        """Close what the previous writer left: keep, in order, each staged write whose
        every stripe can be read back (k fragments), up to the first that cannot; drop
        the rest. So the region holds a prefix of the writes, and every write that was
        acknowledged (committed, or staged in full) is in it."""
        view = make_view(meta)
        answers = await self.host.io.broadcast(
            [n for slab in meta.slabs.values() for n, _ in slab], wire.List(meta.id, 1)
        )
        staged = [
            Staged(version, stripe, index, (first, last, end))
            for node, reply in answers.items()
            if isinstance(reply, wire.Listing)
            for _, stripe, index, version, _, first, last, end in reply.entries
            # Only fragments of the slab's placement count (a stray's are the rebuilder's).
            if view.placement(stripe)[index][0] == node
        ]
        patches = await folding.listed(self, meta, 2)
        out = choose_kept(lac, meta.size, staged, view.layout.policy.k, patches)
        if out.writes:
            log.info(
                "region %s: recovered %d staged writes of the previous writer, dropped %d",
                meta.name,
                len(out.writes) - len(out.dropped),
                len(out.dropped),
            )
        self.base = out.kept
        # What is kept is committed below: its stripes are recorded as written first, and
        # stripes recorded only by writes dropped here are holes again.
        wrote = out.wrote()
        if out.size > meta.size or meta.pending or not extents.covers_all(self.marked, wrote):

            def settle(m: RegionMeta) -> RegionMeta:
                self.check_epoch(m)
                m.size = max(m.size, out.size)
                m.written = settle_written(m.written, m.pending, set(out.dropped), wrote)
                m.lost = extents.minus(m.lost, wrote)
                m.pending = []
                return m

            meta = await self.host.regions.update(meta.name, settle)
            self.marked = extents.minus(meta.written, meta.lost)
            self.size_published(meta.size)
        await folding.fold_recovered(self, meta, patches, staged, out.kept)
        await self.commit_round(meta, max(self.epoch << wire.SEQ_BITS, self.version), True)

    # -- committing -------------------------------------------------------------------

    async def commit_round(self, meta: RegionMeta, upto: int, everyone: bool = False) -> None:
        """Tell the nodes that staged writes up to ``upto`` (``everyone``: all the region's)
        that they are committed. One that cannot be told leaves the region's placements
        until rebuilt: it might hold a staged copy it would never learn was committed."""
        nodes = self.commit_targets(meta, upto, everyone)
        answers = await self.host.io.broadcast(nodes, wire.Commit(meta.id, upto, self.base))
        failed = {n: r for n, r in answers.items() if not isinstance(r, wire.Ok)}
        for reply in failed.values():
            if isinstance(reply, wire.Error) and reply.code == wire.E_FENCED:
                self.fence_off(reply.message)
                self.check()
        if failed:
            tolerates = Layout.of(meta.policy, meta.chunk, meta.slab_stripes).policy.tolerates
            detail = "; ".join(f"{n}: {r}" for n, r in sorted(failed.items(), key=lambda x: x[0]))
            if len(failed) > tolerates:
                raise NodeUnavailable(
                    f"region {meta.name!r}: could not commit writes up to version {upto} on "
                    f"{len(failed)} nodes ({detail}); they are staged in full and the next "
                    "writer keeps them"
                )
            # A node leaves the slots of the slabs this round committed writes of on it
            # (all of them, in a takeover's round: any slab may hold the old writer's).
            each = {n: self.uncommitted_on(n, upto, meta.slab_stripes) for n in failed}
            known = {n: s for n, s in each.items() if s is not None}
            slabs = None if everyone or len(known) < len(each) else known
            await self.vacate(set(failed), slabs)
            log.warning(
                "region %s: nodes %s missed a commit and left %s until rebuilt (%s)",
                meta.name,
                ", ".join(sorted(failed)),
                "its placements"
                if slabs is None
                else "; ".join(f"{n}: slabs {sorted(s)}" for n, s in sorted(slabs.items())),
                detail,
            )
        self.committed_upto(upto)
        await self._confirm(upto)

    async def commit(self, upto: int | None = None) -> None:
        """Commit this session's writes once all of them up to ``upto`` (default: all
        begun so far) are staged. Returns when every node knows."""
        target = self.version if upto is None else upto
        await self.wait_ready(target)
        if self.committed >= target:
            return
        # An earlier write past the recorded size (another caller's, its size not yet
        # published) would hold the round below ``target``: it is staged, so record
        # its size now rather than return before ``target`` is committed.
        grown = [end for v, end in self.unpublished.items() if v <= target]
        if grown:
            await self.publish_size(max(grown))
        async with self.committing:
            # Group commit: callers that queued behind a round find their writes in it.
            if self.committed >= target:
                return
            meta = await self.host.regions.get(self.name)
            await self.commit_round(meta, self.ready())

    async def vacate(self, nodes: set[str], slabs: dict[str, set[int]] | None = None) -> RegionMeta:
        """Take ``nodes`` out of the region's placements (their slots go vacant): out of
        every slab, or of the slabs ``slabs`` names for each."""

        def change(m: RegionMeta) -> RegionMeta | None:
            self.check_epoch(m)
            hit = [
                (s, i)
                for s, slab in m.slabs.items()
                for i, (n, _) in enumerate(slab)
                if n in nodes and (slabs is None or s in slabs.get(n, ()))
            ]
            for s, i in hit:
                m.slabs[s][i] = ("", "")
            m.settle_slots(hit)
            return m if hit else None

        result: RegionMeta = await self.host.regions.update(self.name, change)
        now = time.monotonic()
        self.left.update((n, now) for n in nodes)
        return result

    # -- handoffs ---------------------------------------------------------------------

    async def replace(self, view: RegionView, stripe: int, index: int, why: str) -> bool:
        """Give a fragment whose holder failed a write to a handoff node (or leave the slot
        vacant if none qualifies); updates ZooKeeper, then ``view``."""
        return await handoff.replace(self, view, stripe, index, why)

    # -- writing ----------------------------------------------------------------------

    async def ensure_slabs(self, offset: int, end: int) -> RegionMeta:
        """Placements for the slabs of bytes [offset, end) (new ones fenced at our epoch)."""
        meta: RegionMeta = await self.host.regions.get(self.name)
        layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
        want = layout.slabs_of(offset, end)

        def ready(m: RegionMeta) -> bool:  # and recorded as paged if it may go as a patch
            return all(s in m.slabs for s in want) and (
                m.paged or not pagelog.patchable(layout, offset, end)
            )

        if ready(meta):
            return meta
        async with self.growing:
            # Writes in flight together place a slab once, not once each: placing
            # reads every node's record from ZooKeeper.
            meta = await self.host.regions.get(self.name)
            if not all(s in meta.slabs for s in want):
                meta = await self._place(meta, want)
            if not ready(meta):  # before the first patch is staged (readers rely on it)
                meta = await self.host.regions.update(self.name, self._paged)
            return meta

    def _paged(self, m: RegionMeta) -> RegionMeta | None:
        self.check_epoch(m)
        if m.paged:
            return None
        m.paged = True
        return m

    async def _place(self, meta: RegionMeta, want: range) -> RegionMeta:
        # Fenced at our epoch before the record names them: no writer that learns of
        # the placement (an older one by its watch, say) finds them unfenced.
        chosen = await self.host.call(self.host.placements, meta, want)
        await self.fence(meta, chosen)

        def place(m: RegionMeta) -> RegionMeta | None:
            self.check_epoch(m)
            new = {s: p for s, p in chosen.items() if s not in m.slabs}
            m.slabs.update(new)
            return m if new else None

        placed: RegionMeta = await self.host.regions.update(self.name, place)
        return placed

    async def publish_size(self, size: int, *, exact: bool = False) -> RegionMeta:
        """Record a new size (grow only, unless ``exact``) and the modification time."""

        def change(m: RegionMeta) -> RegionMeta:
            self.check_epoch(m)
            m.size = size if exact else max(m.size, size)
            m.mtime = time.time()
            return m

        new: RegionMeta = await self.host.regions.update(self.name, change)
        self.size_published(new.size, exact)
        return new

    async def write_at(
        self,
        offset: int,
        data: bytes | bytearray | memoryview,
        size: int,
        *,
        ticket: Ticket | None = None,
    ) -> int:
        """Stage ``data`` at ``offset`` without publishing a new size or committing it;
        ``size`` is the writer's view of the region's size (bytes past it are unset).
        Returns the version of the write. With ``ticket`` (from ``enqueue``, its turn
        come) the write lies within ``size`` and has its version already."""
        n = memoryview(data).nbytes
        if ticket is not None:
            try:
                view = self.host.regions.view(await self.ensure_slabs(offset, offset + n))
            except BaseException as exc:
                self.finish(ticket.stamp, False, str(exc))
                raise
            return await self.stage(view, offset, data, size, ticket=ticket)
        if n == 0:
            return self.version
        meta = await self.ensure_slabs(offset, offset + n)
        view = self.host.regions.view(meta)
        sd = view.layout.stripe_data
        tail_end = -(-size // sd) * sd
        if offset + n > size and offset >= tail_end > size and view.placed(size // sd):
            # The stripe holding the old end may keep bytes of a longer past beyond it
            # (not in an unplaced slab: nothing was ever written there).
            await self.stage(view, size, bytes(tail_end - size), size)
        return await self.stage(view, offset, data, size)

    def enqueue(self, meta: RegionMeta, offset: int, n: int) -> Ticket:
        """Queue a write of bytes [offset, offset+n) (n > 0) for its stripes (see
        StripeLocks) and give it its version now: writes queued together take versions
        in the order they queued, so a crash keeps a prefix of them in that order. Taken
        under the region's lock, so a resize queued later waits for it."""
        sd = Layout.of(meta.policy, meta.chunk, meta.slab_stripes).stripe_data
        first, last = offset // sd, (offset + n - 1) // sd
        ticket = self.stripes.enqueue(first, last)
        ticket.stamp = self.begin(first, last, offset + n)
        return ticket

    async def overwrite(self, ticket: Ticket, offset: int, data: memoryview, size: int) -> int:
        """Stage a write queued by ``enqueue`` once its turn comes; returns its version."""
        try:
            await ticket.ready()
            return await self.write_at(offset, data, size, ticket=ticket)
        except BaseException as exc:
            if ticket.stamp.version in self.inflight:  # given up before staging: a barrier
                self.finish(ticket.stamp, False, f"write given up: {exc!r}")
            raise
        finally:
            ticket.release()

    async def stage(
        self,
        view: RegionView,
        offset: int,
        data: bytes | bytearray | memoryview,
        size: int,
        *,
        ticket: Ticket | None = None,
    ) -> int:
        """Stage one write on the nodes of its stripes and record its stripes as written;
        returns its version."""
        n = memoryview(data).nbytes
        sd = view.layout.stripe_data
        first, last = offset // sd, (offset + n - 1) // sd
        async with self.stripes.hold(first, last, ticket is not None):
            stamp = self.begin(first, last, offset + n) if ticket is None else ticket.stamp
            try:
                await self.host.io.write(view, offset, data, size, stamp, self.replace)
                # Before the commit point may pass this write: once committed, a stripe
                # that no node holds must read as lost, never as a hole.
                await self._mark_written(first, last + 1, stamp.version)
            except BaseException as exc:
                self.finish(stamp, False, str(exc))
                doubt = isinstance(exc, EcmemError) and not (
                    exc.retriable or isinstance(exc, Fenced)
                )
                if stamp.landed and doubt and not stamp.doomed:
                    raise WriteInDoubt(f"{exc} (parts of it reached nodes)") from exc
                raise
            self.finish(stamp, True)
        return stamp.version

    async def _mark_written(self, first: int, end: int, version: int) -> None:
        """Record stripes [first, end) of write ``version`` as written (and no longer lost)
        in the region's record; writes staged meanwhile are recorded in the same update."""
        if extents.covers(self.marked, first, end):
            return
        self.unmarked.append((first, end, version))
        async with self.marking:
            if extents.covers(self.marked, first, end):
                return
            todo, self.unmarked = self.unmarked, []

            unlost: Pending = []

            def mark(m: RegionMeta) -> RegionMeta | None:
                nonlocal unlost
                self.check_epoch(m)
                written, pending, unlost = record_writes(
                    m.written, m.lost, m.pending, todo, self.committed
                )
                if written == m.written and pending == m.pending:
                    return None
                m.written, m.pending = written, pending
                return m

            try:
                for attempt in range(MARK_TRIES):
                    try:
                        meta = await self.host.regions.update(self.name, mark)
                        break
                    except CoordinationError:  # ZooKeeper busy or a session renewing
                        if attempt == MARK_TRIES - 1:
                            raise
                        await asyncio.sleep(0.2 * (attempt + 1))
            except BaseException:
                self.unmarked = todo + self.unmarked
                raise
            self.unlost += unlost
            self.marked = extents.union(
                extents.minus(meta.written, meta.lost), extents.normal((f, e) for f, e, _ in todo)
            )
            self.unconfirmed |= {v for _, _, v in meta.pending if wire.epoch_of(v) == self.epoch}
        if len(self.unconfirmed) > PENDING_LIMIT and not self.marking.locked():
            # Keep the record small on a long stream of first writes: commit what is
            # staged so far (its size first: every write up to it is staged in full, so
            # any recovery keeps them), and the next recording drops what it confirms.
            upto = self.staged()
            ends = [end for v, end in self.unpublished.items() if v <= upto]
            if ends:
                await self.publish_size(max(ends))
            meta = await self.host.regions.get(self.name)
            await self.commit_round(meta, self.ready())

    async def _confirm(self, upto: int) -> None:
        """A commit round covered writes up to ``upto``: stripes they wrote first leave
        ``pending``, and lost stripes they rewrote are lost no more."""
        done = {v for v in self.unconfirmed if v <= upto}
        found = extents.normal((f, e) for f, e, v in self.unlost if v <= upto)
        if not done and not found:
            return

        def confirm(m: RegionMeta) -> RegionMeta | None:
            self.check_epoch(m)
            keep = [p for p in m.pending if p[2] not in done]
            lost = extents.minus(m.lost, found)
            if keep == m.pending and lost == m.lost:
                return None
            m.pending, m.lost = keep, lost
            return m

        await self.host.regions.update(self.name, confirm)
        self.unconfirmed -= done
        self.unlost = [x for x in self.unlost if x[2] > upto]
