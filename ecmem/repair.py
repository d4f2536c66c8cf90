"""Repair building blocks shared by the rebuilder and the scrubber: find each stripe's
newest committed version and who holds it, fetch k fragments of it, and store a
rebuilt fragment committed under its original version.

Whoever calls these holds the region's write lease (its epoch fences them off once a
newer writer takes over).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable

from crc32c import crc32c

from . import wire
from .aio import AsyncClient
from .errors import EcmemError, Fenced
from .health import slab_stripe_count
from .layout import Layout
from .meta.model import NodeInfo, RegionMeta
from .pagelog import complete
from .policy import ECPolicy
from .stripes import DEGRADED_TIMEOUT, Got, Outcome, RegionView
from .writers import Writer

REPAIR_TIMEOUT = 10.0


Committed = dict[int, tuple[int, tuple[int, int, int], set[int]]]
# stripe -> fragment index -> a live node off the placement holding it (of the version
# committed_versions found newest)
Strays = dict[int, dict[int, str]]


async def committed_versions(
    client: AsyncClient,
    meta: RegionMeta,
    view: RegionView,
    slab: int,
    skip: set[int],
    strays: Strays | None = None,
    off: set[str] | None = None,
) -> Committed:
    """For each stripe of a slab: its newest committed version, that write's extent, and
    the fragment indexes holding it, asking every holder but those of ``skip``.

    With ``strays``, every live node is asked, and fragments found off the placement fill
    it: a node that missed a commit or a write leaves the placement, yet keeps what it
    held, and a fragment is its write's data wherever it lies (a version names one write).
    The newest version found anywhere wins, so a stray copy never brings back old data.
    ``off`` collects the nodes holding any fragment of the slab off its placement."""
    first = slab * meta.slab_stripes
    end = first + slab_stripe_count(meta, slab)
    holders = {i: n for i, (n, _) in enumerate(meta.slabs[slab]) if n and i not in skip}
    asked = set(holders.values())
    if strays is not None:
        asked |= set(client.live_nodes())
    answers = await client.io.broadcast(sorted(asked), wire.List(meta.id, 0))
    out: Committed = {}
    found: dict[int, dict[int, dict[int, str]]] = {}  # stripe -> version -> index -> node
    for node, reply in answers.items():
        if not isinstance(reply, wire.Listing):
            continue
        mine = {i for i, n in holders.items() if n == node}
        for _, stripe, index, version, _, wfirst, wlast, wend in reply.entries:
            if not first <= stripe < end or version < view.min_version(stripe):
                continue  # another slab's, or written before a truncation
            if index in mine and version < view.partial.get((slab, index), 0):
                continue  # left from the handoff's earlier stay at this index: stale
            if index not in mine:
                if off is not None and node not in holders.values():
                    off.add(node)
                if strays is not None:
                    found.setdefault(stripe, {}).setdefault(version, {})[index] = node
                    cur = out.get(stripe)
                    if cur is None or version > cur[0]:
                        out[stripe] = (version, (wfirst, wlast, wend), set())
                continue
            cur = out.get(stripe)
            if cur is None or version > cur[0]:
                out[stripe] = (version, (wfirst, wlast, wend), {index})
            elif version == cur[0]:
                cur[2].add(index)
    if strays is not None:
        for stripe, (version, _, have) in out.items():
            extra = {
                i: n for i, n in found.get(stripe, {}).get(version, {}).items() if i not in have
            }
            if extra:
                strays[stripe] = extra
    return out


async def store_fragment(
    client: AsyncClient,
    meta: RegionMeta,
    stripe: int,
    index: int,
    version: int,
    write: tuple[int, int, int],
    frag: bytes,
    length: int,
    target: tuple[str, str],
    epoch: int,
) -> None:
    """Store a rebuilt fragment, committed, on ``target`` for a lease holder of ``epoch``."""
    data = frag.rstrip(b"\0")  # zeros past the stored prefix read back as zeros
    msg = wire.Repair(meta.id, stripe, index, version, length, crc32c(data), *write, epoch, data)
    await _repair_request(client, meta, target, msg, "a rebuilt fragment")


async def _repair_request(
    client: AsyncClient, meta: RegionMeta, target: tuple[str, str], msg: wire.Message, what: str
) -> None:
    conn, reply = await client.pool.request(target[0], msg, REPAIR_TIMEOUT)
    if conn.incarnation != target[1]:
        raise Retry(f"node {target[0]} restarted during the rebuild")
    if isinstance(reply, wire.Error):
        if reply.code == wire.E_FENCED:
            raise Fenced(f"region {meta.name}: {reply.message}")
        raise Retry(f"node {target[0]} refused {what}: {reply.message}")


async def fetch_raw(
    client: AsyncClient, view: RegionView, stripe: int, index: int, version: int
) -> Outcome:
    """Fragment ``index`` of a stripe at ``version`` whole, as encoded (no page patches
    laid over: parity never has them), from any node, slow or not."""
    size = view.layout.fragment_size
    return await client.io.fetch(
        view, stripe, index, 0, size, DEGRADED_TIMEOUT, avoid_suspects=False, want=version, raw=True
    )


async def fetch_sources(
    client: AsyncClient, view: RegionView, stripe: int, version: int, have: set[int], k: int
) -> dict[int, bytes] | None:
    """k fragments of ``version`` as encoded (no page patches laid over), data fragments
    first (late binding over the rest); None if fewer than k answer."""
    got: dict[int, bytes] = {}
    order = sorted(have)
    while len(got) < k and order:
        batch, order = order[: k - len(got)], order[k - len(got) :]
        outcomes = await asyncio.gather(
            *(fetch_raw(client, view, stripe, i, version) for i in batch)
        )
        for i, o in zip(batch, outcomes, strict=True):
            if isinstance(o, Got):
                got[i] = bytes(o.data)
    return got if len(got) >= k else None


# A committed page patch: (version, data fragment, byte in it) -> (bytes, its write)
PatchRecords = dict[tuple[int, int, int], tuple[bytes, tuple[int, int, int]]]


async def stripe_patches(
    client: AsyncClient, view: RegionView, stripe: int, after: int
) -> PatchRecords | None:
    """Every committed page patch of a stripe newer than version ``after``: from its
    placed nodes but partial ones (a handoff holds none from before it) when enough of
    them answer to be sure of all (pagelog.complete); else from every live node (a
    patch's copies that left the placement stay on the nodes that held them, and one
    copy is the whole patch), if every one of them answers. None if not sure."""
    if not isinstance(view.layout.policy, ECPolicy):
        return {}  # only erasure-coded stripes take patches
    placement = view.placement(stripe)
    slab = view.layout.slab_of(stripe)
    placed = {
        placement[i][0]: i
        for i in range(len(placement))
        if placement[i][0] and (slab, i) not in view.partial
    }
    found: PatchRecords = {}
    answered = await _ask_patches(client, view, stripe, after, placed, found)
    if complete(view.layout.policy.k, [placed[n] for n in answered]):
        return found
    everyone = set(client.live_nodes()) | set(placed)
    answered |= await _ask_patches(client, view, stripe, after, everyone - answered, found)
    return found if answered >= everyone else None


async def _ask_patches(
    client: AsyncClient,
    view: RegionView,
    stripe: int,
    after: int,
    nodes: Iterable[str],
    found: PatchRecords,
) -> set[str]:
    """Add what ``nodes`` hold to ``found``; returns those that answered."""
    msg = wire.GetPatches(view.id, stripe, wire.ALL_INDEXES, after, 0)
    answers = await client.io.broadcast(nodes, msg)
    answered = set()
    for node, reply in answers.items():
        if not isinstance(reply, wire.PatchList):
            continue
        answered.add(node)
        for (version, index, at, data), write in zip(reply.patches(), reply.writes(), strict=True):
            found[(version, index, at)] = (data, write)
    return answered


async def carry_patches(
    client: AsyncClient,
    meta: RegionMeta,
    stripe: int,
    index: int,
    patches: PatchRecords,
    target: tuple[str, str],
    lease: Writer,
) -> None:
    """Give a rebuilt fragment's node the committed patches a placed node of its index
    keeps: a data fragment's own, every one on a parity node (pagelog.log_indexes)."""
    k = Layout.of(meta.policy, meta.chunk, meta.slab_stripes).policy.k
    for (version, patched, at), (data, write) in sorted(patches.items()):
        if index < k and patched != index:
            continue
        msg = wire.RepairPatch(
            meta.id, stripe, patched, index, version, at, crc32c(data), *write, lease.epoch,
            lease.committed, lease.base, data,
        )  # fmt: skip
        await _repair_request(client, meta, target, msg, "a page patch of the rebuild")


def via(
    view: RegionView, stripe: int, strays: dict[int, str], live: dict[str, NodeInfo]
) -> RegionView:
    """``view`` with the stray holders of a stripe's fragments standing in its placement."""
    slab = view.layout.slab_of(stripe)
    placement = list(view.slabs[slab])
    partial = dict(view.partial)
    for index, node in strays.items():
        if node in live:
            placement[index] = (node, live[node].incarnation)
            partial.pop((slab, index), None)  # a stray's copy is whole, not a handoff's
    slabs = dict(view.slabs)
    slabs[slab] = placement
    return dataclasses.replace(view, slabs=slabs, partial=partial)


class Retry(EcmemError):
    """A slab's rebuild met a transient problem; the next pass tries again."""
