"""A page write from the blocking client without the event loop.

A write of a few pages inside one data fragment goes as a page patch to M+1 nodes and
is then committed on them: two round trips. Through the event loop each costs a loop
run, tasks and wake-ups; over the blocking client's plain sockets, a send to each node
and a receive from each. Only when the writer is idle (nothing in flight or queued,
nothing to record in ZooKeeper, no fold due) and the stripe whole and answering; the
protocol is the writer's own (``Writer.begin``, ``finish``, ``commit_targets``,
``committed_upto``, ``StripeIO.patch_plan``). Anything else, or any trouble, goes the
asyncio way, with the same version.
"""

from __future__ import annotations

from crc32c import crc32c

from . import pagelog, wire
from .blocking import BlockingConnection, BlockingPool
from .errors import NodeUnavailable
from .meta.model import RegionMeta
from .stripes import RegionView, Stamp
from .writepath import StripeIO
from .writer import WriterSession
from .writers import State


def page_write(
    fast: BlockingPool,
    io: StripeIO,
    w: WriterSession,
    view: RegionView,
    offset: int,
    data: memoryview,
) -> tuple[Stamp, bool] | None:
    """Send ``data`` at ``offset`` as a page patch: (its write, whether every node took
    it), or None if this write cannot go so (nothing was sent, no version taken)."""
    layout = view.layout
    stripe, start = divmod(offset, layout.stripe_data)
    n = data.nbytes
    busy = w.inflight or w.unpublished or w.unconfirmed or w.unlost or w.stripes.busy(stripe)
    if w.state is not State.WRITING or w.lost or busy or start + n > layout.stripe_data:
        return None
    if w.patched.count(stripe) + 1 >= pagelog.FOLD_AFTER or w.patched.total >= pagelog.UNFOLDED_MAX:
        return None  # the asyncio way folds after this write
    plan = io.patch_plan(view, stripe, start, n)
    if plan is None:
        return None
    index, at, logs = plan
    stamp = w.begin(stripe, stripe, offset + n)
    first, last, end = stamp.write
    lac, base = stamp.commit()
    crc = crc32c(data)
    placement = view.placement(stripe)
    sent: list[tuple[BlockingConnection, int, str]] = []
    ok = True
    for i in logs:
        node, incarnation = placement[i]
        msg = wire.Patch(
            view.id, stripe, index, i, stamp.version, at, crc, first, last, end, lac, base, data
        )
        stamp.nodes.add(node)
        try:
            conn = fast.get(node)
            sent.append((conn, conn.send(msg), incarnation))
        except NodeUnavailable:
            ok = False
    for conn, req, incarnation in sent:
        try:
            reply = conn.receive(req)
        except NodeUnavailable:
            stamp.landed.add(conn.node_id)  # no answer: it may have staged it
            ok = False
            continue
        if not isinstance(reply, wire.Error):
            stamp.landed.add(conn.node_id)
        ok = ok and conn.incarnation == incarnation and isinstance(reply, wire.Ok)
    if stamp.landed:
        stamp.patched_somewhere.add(stripe)
    if ok:
        stamp.patches[stripe] = n
        w.finish(stamp, True)
    return stamp, ok


async def restage(
    w: WriterSession, meta: RegionMeta, offset: int, data: memoryview, stamp: Stamp
) -> None:
    """Write a page write the blocking way could not finish the asyncio way, at the
    version it took (nothing else is queued: the writer was idle)."""
    stripe = offset // w.host.regions.view(meta).layout.stripe_data
    ticket = w.stripes.enqueue(stripe, stripe)
    ticket.stamp = stamp
    await w.overwrite(ticket, offset, data, meta.size)


def commit(fast: BlockingPool, w: WriterSession, meta: RegionMeta, version: int) -> bool:
    """Commit writes up to ``version`` on the nodes they went to; False if any trouble
    (the asyncio commit round then does it, and deals with the nodes that failed)."""
    upto = w.ready()
    if upto < version or w.unconfirmed or w.unlost:
        return False
    msg = wire.Commit(meta.id, upto, w.base)
    sent: list[tuple[BlockingConnection, int]] = []
    ok = True
    for node in sorted(w.commit_targets(meta, upto)):
        try:
            conn = fast.get(node)
            sent.append((conn, conn.send(msg)))
        except NodeUnavailable:
            ok = False
    for conn, req in sent:
        try:
            ok = isinstance(conn.receive(req), wire.Ok) and ok
        except NodeUnavailable:
            ok = False
    if ok:
        w.committed_upto(upto)
    return ok
