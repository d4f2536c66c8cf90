"""Writing stripes of a region to its storage nodes: encode, stage every fragment,
hand a failed node's fragment off, and tell when a write is durable enough to count.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable

from crc32c import crc32c

from . import checksum, patience, wire
from .conn import NodeConnection
from .errors import EcmemError, Fenced, NodeUnavailable, NoSpaceError
from .layout import column
from .logs import Tally, where
from .pagelog import log_indexes, patch_target
from .policy import ReplicationPolicy
from .readpath import ReadPath
from .stripes import WRITE_WINDOW, Got, RegionView, Replacer, Stamp, raise_for, windowed

log = logging.getLogger(__name__)
DEGRADED = Tally(log)  # once a minute per region, then counted

# Overwrites whose column (the bytes each fragment changes) is at most this long go as
# slices: each node patches its fragment in place of sending, or reading, whole ones.
SLICE_MAX = 64 * 1024
# Test-only: a build whose slices leave parity as it was, so the page-writes chaos
# scenario can show it catches stale parity. Never set it for real data.
UNSAFE_STALE_PARITY = os.environ.get("ECMEM_UNSAFE_SLICE_STALE_PARITY") == "1"
# Test-only: a build that acknowledges a page patch held by the data fragment's node
# alone, not by M+1 nodes, so the chaos suite can show it loses acknowledged writes.
UNSAFE_EARLY_ACK = os.environ.get("ECMEM_UNSAFE_EARLY_ACK") == "1"
# Small overwrites go as page patches unless ECMEM_PAGE_PATCHES=0 (then as slices).
PAGE_PATCHES = os.environ.get("ECMEM_PAGE_PATCHES", "1") != "0"


HANDOFF_TRIES = 3  # handoff nodes tried in turn for a slot whose node failed a write
# A write short of min_durable nodes (all failures being nodes out) waits this long for
# one to answer again or a handoff node to appear, trying every WRITE_RETRY seconds.
WRITE_PATIENCE = 5.0
WRITE_RETRY = 0.25


class StripeIO(ReadPath):
    """Stripe reads (ReadPath) and writes of one client, over its connection pool."""

    async def _stage(
        self, node_id: str, msg: wire.Message, stamp: Stamp
    ) -> tuple[NodeConnection, wire.Message]:
        """Send a part of write ``stamp`` to be staged, noting where it may have landed
        (a node that did not refuse it): a write that fails after landing anywhere is in
        doubt (the next writer's recovery may keep it)."""
        stamp.nodes.add(node_id)
        try:
            conn, reply = await self.pool.request(node_id, msg)
        except BaseException:
            stamp.landed.add(node_id)
            raise
        if isinstance(reply, wire.Error):
            stamp.refused.add(node_id)
        else:
            stamp.landed.add(node_id)
        return conn, reply

    async def _stage_part(
        self, view: RegionView, node_id: str, incarnation: str, msg: wire.Message, stamp: Stamp
    ) -> bool:
        """Stage a slice or a patch: False if the node could not take it (unreachable,
        restarted, without the fragment it goes into, full), so the caller writes the
        stripe whole instead; raises on anything else (fenced)."""
        try:
            conn, reply = await self._stage(node_id, msg, stamp)
        except NodeUnavailable:
            return False
        if conn.incarnation != incarnation:
            return False
        if isinstance(reply, wire.Error) and reply.code in (wire.E_NOT_FOUND, wire.E_NO_SPACE):
            return False
        raise_for(view, node_id, reply)
        return True

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
            conn, reply = await self._stage(node_id, msg, stamp)
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

        async def hand_off(errors: dict[int, BaseException]) -> None:
            for _ in range(HANDOFF_TRIES):
                # A handoff node takes the fragment over; with none to be had, the slot is
                # left vacant (its old holder can never be trusted for this slab again). A
                # handoff node may be down too (registered until its session expires).
                lost = [i for i, e in errors.items() if isinstance(e, NodeUnavailable)]
                moved = [
                    i for i in lost if replace and await replace(view, stripe, i, str(errors[i]))
                ]
                if not moved:
                    return
                retried = await attempt(moved)
                for i in moved:
                    if i in retried:
                        errors[i] = retried[i]
                    else:
                        del errors[i]

        errors = await attempt(list(range(len(parts))))
        await hand_off(errors)
        deadline = asyncio.get_running_loop().time() + WRITE_PATIENCE
        while (
            len(parts) - len(errors) < view.durable_minimum()
            and all(isinstance(e, NodeUnavailable) for e in errors.values())
            and asyncio.get_running_loop().time() < deadline
            and replace is not None
        ):
            # Too few nodes for now (some down, no spare to hand off to): wait for one to
            # answer again or a handoff node to appear, rather than fail the write.
            await asyncio.sleep(WRITE_RETRY)
            retried = await attempt(sorted(errors))
            errors = {i: retried[i] for i in errors if i in retried}
            await hand_off(errors)
        staged = len(parts) - len(errors)
        if not errors:
            return
        detail = "; ".join(f"fragment {i}: {e}" for i, e in sorted(errors.items()))
        if staged >= view.durable_minimum() and all(
            isinstance(e, NodeUnavailable) for e in errors.values()
        ):
            slab = layout.slab_of(stripe)
            DEGRADED.warn(
                f"region {view.name}",
                "stripes written degraded",
                slab,
                "region %s slab %d stripe %d: written degraded, %d of %d fragments (%s); "
                "it is rebuilt when nodes come back or are replaced",
                view.name,
                slab,
                stripe,
                staged,
                len(parts),
                detail,
                extra=where(view.name, slab),
            )
            return
        if staged < layout.policy.k and stripe not in stamp.patched_somewhere:
            stamp.doomed = True  # recovery needs k fragments of every stripe: never kept
        fate = (
            "it was not applied"
            if stamp.doomed
            else "the region's next writer keeps it if enough of it is still there, or drops it"
        )
        msg = (
            f"region {view.name!r} slab {layout.slab_of(stripe)} stripe {stripe}: write not "
            f"stored ({staged} of {len(parts)} fragments, {view.durable_minimum()} needed: "
            f"{detail}); {fate}"
        )
        first_error = next(iter(errors.values()))
        err: EcmemError
        if isinstance(first_error, NoSpaceError):
            err = NoSpaceError(msg)
        else:
            err = NodeUnavailable(msg, node=getattr(first_error, "node", ""))
        raise err from first_error

    async def write_slice(
        self,
        view: RegionView,
        stripe: int,
        start: int,
        data: memoryview,
        stamp: Stamp,
    ) -> bool:
        """Overwrite ``data`` at ``start`` of a stripe's data by sending each fragment only
        the column that changes: the codes are linear, so encoding the k data slices of
        a column gives the parity of that column. Every node stages the whole stripe's
        new version (its fragment with the slice in place), so readers, recovery and
        repair see an ordinary write. False when it cannot go so (a fragment unread, a
        slot vacant or moved, a node without the source version): the caller then writes
        the whole stripe, at the same version."""
        layout = view.layout
        pol = layout.policy
        header, page = pol.header, checksum.PAGE
        n = len(data)
        placement = view.placement(stripe)
        slab = layout.slab_of(stripe)
        if any(not node or self.pool.is_suspect(node) for node, _ in placement) or any(
            (slab, i) in view.partial for i in range(pol.width)
        ):
            return False  # the whole-stripe write knows how to go around a node
        source = stamp.latest(stripe)
        if isinstance(pol, ReplicationPolicy):
            # Every copy is the whole stripe: the column is the bytes written.
            at, payloads = start, [data] * pol.width
            if source == 0:
                got = await self.fetch(view, stripe, 0, 0, 0, avoid_suspects=False)
                if not isinstance(got, Got):
                    return False
                source = got.version
        else:
            ranges, lo, hi = column(layout, stripe, start, n, page)
            if hi - lo > SLICE_MAX:
                return False
            width = hi - lo
            cells = bytearray(pol.k * width)
            got_all = await asyncio.gather(
                *(
                    self.fetch(
                        view, stripe, i, header + lo, width, avoid_suspects=False, want=source
                    )
                    for i in range(pol.k)
                )
            )
            versions = {g.version for g in got_all if isinstance(g, Got)}
            if len(versions) != 1 or not all(isinstance(g, Got) for g in got_all):
                return False  # unreadable, or a commit landing in between: go the long way
            source = versions.pop()
            for i, g in enumerate(got_all):
                assert isinstance(g, Got)
                cells[i * width : i * width + len(g.data)] = g.data
            stale = pol.encode(cells) if UNSAFE_STALE_PARITY else []
            for index, off, m, pos in ranges:
                at0 = index * width + off - header - lo
                cells[at0 : at0 + m] = data[pos : pos + m]
            frags = pol.encode(cells)
            if stale:
                frags = frags[: pol.k] + stale[pol.k :]
            at, payloads = header + lo, [memoryview(f)[header:] for f in frags]
        first, last, end = stamp.write
        lac, base = stamp.commit()
        size = layout.fragment_size

        async def put(i: int) -> bool:
            node_id, incarnation = placement[i]
            part = payloads[i]
            msg = wire.PutSlice(
                view.id,
                stripe,
                i,
                stamp.version,
                size,
                source,
                at,
                crc32c(part),
                first,
                last,
                end,
                lac,
                base,
                part,
            )
            return await self._stage_part(view, node_id, incarnation, msg, stamp)

        done = await asyncio.gather(*(put(i) for i in range(pol.width)))
        return all(done)

    def patch_plan(
        self, view: RegionView, stripe: int, start: int, length: int
    ) -> tuple[int, int, list[int]] | None:
        """(data fragment, byte in it, fragment indexes to send to) for a write of bytes
        [start, start+length) of a stripe's data that can go as a page patch; None if it
        cannot: not one data fragment's bytes, the stripe never written, or a slot of it
        vacant, partial or suspect. A stripe with a node out is written whole instead,
        which hands that node's fragment off (patches alone would never touch it, and
        the stripe would stay degraded)."""
        layout = view.layout
        target = patch_target(layout, start, length)
        if target is None or not PAGE_PATCHES or not view.paged or not view.is_written(stripe):
            return None
        slab = layout.slab_of(stripe)
        if any(
            not node or self.pool.is_suspect(node) or (slab, i) in view.partial
            for i, (node, _) in enumerate(view.placement(stripe))
        ):
            return None
        index, at = target
        logs = log_indexes(layout, index)
        return index, at, logs[:1] if UNSAFE_EARLY_ACK else logs

    async def write_patch(
        self, view: RegionView, stripe: int, start: int, data: memoryview, stamp: Stamp
    ) -> bool:
        """Overwrite ``data`` at ``start`` of a stripe's data as one page patch, staged on
        the data fragment's node and the stripe's parity nodes (ecmem/pagelog.py). False
        when it cannot go so (``patch_plan``, or a node refused or did not answer): the
        caller writes it another way, at the same version."""
        plan = self.patch_plan(view, stripe, start, len(data))
        if plan is None:
            return False
        index, at, logs = plan
        placement = view.placement(stripe)
        first, last, end = stamp.write
        lac, base = stamp.commit()
        crc = crc32c(data)

        async def send(i: int) -> bool:
            node_id, incarnation = placement[i]
            msg = wire.Patch(
                view.id, stripe, index, i, stamp.version, at, crc, first, last, end, lac, base, data
            )
            return await self._stage_part(view, node_id, incarnation, msg, stamp)

        done = all(await asyncio.gather(*(send(i) for i in logs)))
        if stamp.landed & {placement[i][0] for i in logs}:
            stamp.patched_somewhere.add(stripe)  # one copy of a patch is enough to keep it
        return done

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
            inside = base_off + start + length <= size
            if (
                inside
                and stamp.may_patch
                and await self.write_patch(view, stripe, start, chunk, stamp)
            ):
                stamp.patches[stripe] = length
                return
            # A patched stripe is written whole, its patches with it (a slice would leave
            # the parity of the other patched columns behind).
            patched = stamp.patched(stripe)
            if inside and not patched and await self.write_slice(view, stripe, start, chunk, stamp):
                return
            if base_off >= size:
                base = bytearray(sd)
            else:

                async def read_base(_: int) -> bytearray:
                    if patched:
                        latest = stamp.latest(stripe)
                        got = await self.read_degraded(view, stripe, latest, patched)
                        return bytearray(got[0])
                    # Our own writes may not be committed yet: read the newest we staged.
                    return await self.read(view, base_off, sd, stamp.latest(stripe))

                # Given up, the write's version would stop the writer: wait out a fault.
                base = await patience.patiently(
                    read_base, patience.unmoved, patience.hopeful, asyncio.sleep, patience.PATIENCE
                )
                valid = size - base_off
                if valid < sd:  # past the end: leftovers of a longer life read as zeros
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
        nodes = [n for slab in view.slabs.values() for n, _ in slab]
        answers = await self.broadcast(nodes, wire.Delete(view.id, from_stripe, epoch))
        return [n for n, r in answers.items() if isinstance(r, BaseException)]
