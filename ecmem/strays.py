"""Fragments off their slots, for a read that found fewer than k on a stripe's placement.

A node that missed a write or a commit leaves its slot (a handoff takes it, or it stays
vacant until rebuilt), yet keeps what it held; the slot's new holder lacks the slab's
older stripes until the rebuilder copies them. Between the two, a stripe may have k
fragments of its newest version only counting those off the placement. A version
names one write, so such a fragment is that write's data wherever it lies (its page
checksums are checked as on any read); only the version the read settled on from the
placement is taken (none if the placement gave nothing: a node that timed out may
hold a newer one), so a stray copy never brings back old data.
"""

from __future__ import annotations

import asyncio

from . import checksum, wire
from .conn import ConnectionPool
from .errors import DataUnavailableError, NodeTimeout, NodeUnavailable
from .stripes import DEGRADED_TIMEOUT, Got, RegionView

Found = dict[int, dict[int, Got]]  # version -> fragment index -> what a stray node sent


def judge(view: RegionView, stripe: int, want: int, reply: wire.Message) -> Got | None:
    """A stray node's answer to a whole-fragment Get: the fragment if it is whole, its
    checksums hold and it is of ``want`` (any version if 0) and not from before a
    truncation; else None."""
    if not isinstance(reply, wire.Data) or reply.fragment_len != view.layout.fragment_size:
        return None
    if want and reply.version != want:
        return None
    if reply.version < view.min_version(stripe):
        return None
    payload = reply.payload
    segments = payload if isinstance(payload, tuple) else (memoryview(payload),)
    if checksum.bad_pages_in(segments, reply.crcs, reply.first_page):
        return None
    data = memoryview(b"".join(segments))
    if len(data) != reply.fragment_len:
        return None
    return Got(reply.version, data, (reply.wfirst, reply.wcount), reply.pending, reply.patched)


async def find(
    pool: ConnectionPool, view: RegionView, stripe: int, want: int, indexes: list[int]
) -> Found:
    """Fragments ``indexes`` of a stripe (of version ``want``, or each node's committed
    one if 0) held by live nodes off their slots, as encoded (no page patches laid). A
    placed node is asked for the other slots' fragments: it may have held one of them
    before it left that slot and was given this one."""
    placement = view.placement(stripe)
    live = sorted(n for n in pool.members() if not pool.is_suspect(n))
    size = view.layout.fragment_size

    async def ask(node: str, index: int) -> tuple[int, Got | None]:
        msg = wire.Get(view.id, stripe, index, 0, size, want, 0, 1)
        try:
            _, reply = await pool.request(node, msg, DEGRADED_TIMEOUT)
        except (NodeTimeout, NodeUnavailable):
            return index, None
        return index, judge(view, stripe, want, reply)

    found: Found = {}
    answers = await asyncio.gather(
        *(ask(n, i) for i in indexes for n in live if n != placement[i][0])
    )
    for index, got in answers:
        if got is not None:
            found.setdefault(got.version, {})[index] = got
    return found


async def fill(
    pool: ConnectionPool,
    view: RegionView,
    stripe: int,
    target: int,
    by_version: dict[int, dict[int, bytes]],
    patched: dict[int, bool],
    asof: int,
) -> bool:
    """Add the fragments of version ``target`` found off the placement to ``by_version``;
    True if k of it are then at hand. A stray may have left before a patch: its patches
    are to be read (``patched``; read_patches vouches for them or gives up) unless the
    record proves there are none (``view.synced``: read after a ZooKeeper sync in this
    try, or the writer's own on its fold paths, as it alone sets the mark). A record from
    the watch that says none is read afresh first (DataUnavailableError, which the
    patience loop answers with a synced read)."""
    policy = view.layout.policy
    have = by_version.get(target, {})
    off = await find(pool, view, stripe, target, [i for i in range(policy.width) if i not in have])
    for i, got in off.get(target, {}).items():
        by_version.setdefault(target, {})[i] = bytes(got.data)
    if off.get(target):
        patched[target] = patched.get(target, False) or view.paged
    if len(by_version.get(target, {})) < policy.k:
        return False
    if not (view.paged or view.synced or asof):
        why = {i: "its record is read afresh" for i in off[target]}
        raise DataUnavailableError(view.name, view.layout.slab_of(stripe), stripe, why, policy.k)
    return True
