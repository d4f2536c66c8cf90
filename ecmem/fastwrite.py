"""Page writes from the blocking client without the event loop.

Writes of a few pages each inside one data fragment go as page patches to M+1 nodes
and are then committed on them. Through the event loop each round trip costs a loop
run, tasks and wake-ups; over the blocking client's plain sockets, a send to each node
and a receive from each. A ``pwritev`` of many pages sends them in rounds, each round
at most one page per stripe and all its patches pipelined on the nodes' connections,
then commits them together.

Only when the writer is idle (nothing in flight or queued, nothing to record in
ZooKeeper, no fold due) and every stripe whole and answering; the protocol is the
writer's own (``Writer.begin``, ``finish``, ``commit_targets``, ``committed_upto``,
``StripeIO.patch_plan``). Anything else, or any trouble, goes the asyncio way, with
the versions taken.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from crc32c import crc32c

from . import pagelog, wire
from .blocking import BlockingConnection, BlockingPool
from .errors import NodeUnavailable
from .meta.model import RegionMeta
from .stripes import RegionView, Stamp
from .writepath import StripeIO
from .writer import WriterSession
from .writers import State

# Patches in one frame at most: its entries stay well under the metadata limit.
FRAME_PATCHES = 256


@dataclass
class PageWrite:
    offset: int
    data: memoryview
    stripe: int
    index: int  # the data fragment it patches
    at: int  # byte in that fragment
    logs: list[int]  # fragment indexes whose nodes keep it
    stamp: Stamp | None = None
    done: bool = False  # staged on every one of its nodes


def plan(
    io: StripeIO, w: WriterSession, view: RegionView, items: Sequence[tuple[int, memoryview]]
) -> list[PageWrite] | None:
    """The page writes ``items`` become, or None if they cannot all go this way."""
    layout = view.layout
    busy = w.inflight or w.unpublished or w.unconfirmed or w.unlost
    # A region file's writes go from tasks that may not have queued yet: they would take
    # versions after these though written before.
    if w.state is not State.WRITING or w.lost or busy or w.files:
        return None
    out = []
    for offset, data in items:
        stripe, start = divmod(offset, layout.stripe_data)
        if start + data.nbytes > layout.stripe_data or w.stripes.busy(stripe):
            return None
        target = io.patch_plan(view, stripe, start, data.nbytes)
        if target is None:
            return None
        out.append(PageWrite(offset, data, stripe, *target))
    count: Counter[int] = Counter()
    nbytes: Counter[int] = Counter()
    for p in out:
        count[p.stripe] += 1
        nbytes[p.stripe] += p.data.nbytes
    bound = pagelog.UNFOLDED_MAX - sum(nbytes.values())
    for s in count:
        if w.patched.fold_first(s, count[s], nbytes[s], pagelog.FOLD, bound):
            return None  # the asyncio way folds after these writes
    return out


def rounds(pages: Sequence[PageWrite]) -> list[list[PageWrite]]:
    """Pages in rounds, in order, a stripe at most once a round: a page of a round that
    fails is then the newest write of its stripe sent, to be written another way at
    its version with nothing newer of its stripe staged."""
    out: list[list[PageWrite]] = []
    seen: Counter[int] = Counter()
    for p in pages:
        r = seen[p.stripe]
        seen[p.stripe] += 1
        if r == len(out):
            out.append([])
        out[r].append(p)
    return out


def send(fast: BlockingPool, w: WriterSession, view: RegionView, pages: list[PageWrite]) -> bool:
    """Take versions for ``pages`` in order and send them round by round; stops after
    a round with trouble. True if every page is staged on all its nodes; those not are
    for ``restage``."""
    for p in pages:
        p.stamp = w.begin(p.stripe, p.stripe, p.offset + p.data.nbytes)
    for batch in rounds(pages):
        if not _round(fast, w, view, batch):
            return False
    return True


def _round(fast: BlockingPool, w: WriterSession, view: RegionView, batch: list[PageWrite]) -> bool:
    """One round: each node's patches of ``batch`` in one Patches frame, all nodes at once."""
    entries: dict[str, list[list[int]]] = {}
    data: dict[str, list[memoryview]] = {}
    owner: dict[str, list[int]] = {}  # node -> the page of each of its entries
    expect: dict[str, str] = {}  # node -> the incarnation the placement names
    lac = base = 0
    for n, p in enumerate(batch):
        stamp = p.stamp
        assert stamp is not None
        first, last, end = stamp.write
        lac, base = stamp.commit()  # the same for every page of a round
        crc = crc32c(p.data)
        placement = view.placement(p.stripe)
        for i in p.logs:
            node, incarnation = placement[i]
            entries.setdefault(node, []).append(
                [p.stripe, p.index, i, stamp.version, p.at, crc, first, last, end, p.data.nbytes]
            )
            data.setdefault(node, []).append(p.data)
            owner.setdefault(node, []).append(n)
            expect[node] = incarnation
            stamp.nodes.add(node)
    failed: set[int] = set()
    sent: list[tuple[str, BlockingConnection, int, list[int]]] = []
    for node, mine in entries.items():
        for lo in range(0, len(mine), FRAME_PATCHES):
            hi = lo + FRAME_PATCHES
            msg = wire.Patches(view.id, lac, base, mine[lo:hi], tuple(data[node][lo:hi]))
            try:
                conn = fast.get(node)
                sent.append((node, conn, conn.send(msg), owner[node][lo:hi]))
            except NodeUnavailable:
                failed.update(owner[node][lo:hi])
    for node, conn, req, pages in sent:
        try:
            reply = conn.receive(req)
        except NodeUnavailable:
            for n in pages:  # no answer: it may have staged them
                _stamp(batch[n]).landed.add(node)
            failed.update(pages)
            continue
        refused = (
            {f[0] for f in reply.info.get("failed", [])}
            if isinstance(reply, wire.Ok)
            else set(range(len(pages)))
        )
        for e, n in enumerate(pages):
            if e not in refused:
                _stamp(batch[n]).landed.add(node)
        if conn.incarnation != expect[node]:  # restarted: what it holds is not ours
            failed.update(pages)
        else:
            failed.update(pages[e] for e in refused)
    for n, p in enumerate(batch):
        stamp = _stamp(p)
        if stamp.landed:
            stamp.patched_somewhere.add(p.stripe)
        if n not in failed:
            stamp.patches[p.stripe] = p.data.nbytes
            w.finish(stamp, True)
            p.done = True
    return not failed


def _stamp(p: PageWrite) -> Stamp:
    assert p.stamp is not None
    return p.stamp


async def restage(w: WriterSession, meta: RegionMeta, pages: list[PageWrite]) -> None:
    """Write the pages the blocking way did not finish the asyncio way, in order, at the
    versions they took (nothing else is queued: the writer was idle)."""
    for p in pages:
        if p.done or p.stamp is None:
            continue
        ticket = w.stripes.enqueue(p.stripe, p.stripe)
        ticket.stamp = p.stamp
        await w.overwrite(ticket, p.offset, p.data, meta.size)


def give_up(w: WriterSession, pages: list[PageWrite], exc: BaseException) -> None:
    """The blocking way was interrupted (not a node's trouble): the pages not staged
    are failed writes, so that nothing waits for them and later ones are not committed
    past them (the writer stops; the next one keeps what is whole)."""
    for p in pages:
        if not p.done and p.stamp is not None and p.stamp.version in w.inflight:
            w.finish(p.stamp, False, f"page write interrupted: {exc!r}")


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
