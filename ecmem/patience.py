"""Reads wait out, for a bounded time, faults the promise covers.

A stripe can be short of fragments for a moment while no more than M hosts are out: a
node paused or restarting, a handed-off slot its writer is still catching up, a
reader's cached placement behind the record. None of that is lost data, and each ends
within seconds (a pause ends or is gone around, a catch-up finishes, the rebuilder
fills a vacant slot). So a read that finds too few fragments looks again, with the
region's record read afresh, for up to ``patience`` seconds, before it reports the
stripe unavailable; a client that would rather fail at once sets it to 0. It waits
only while at least k of the stripe's slots have a holder ZooKeeper lists as live (or
listed in the last 10 s: a ZooKeeper failover can drop every node for a moment), or
none yet: with more slots held by nodes ZooKeeper has dropped, only their return or a
rebuild can help, which takes longer than a read should wait. Data known lost
(``DataLostError``) is reported at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from typing import Any, TypeVar

from . import extents
from .errors import DataLostError, DataUnavailableError
from .layout import Layout
from .meta.model import RegionMeta

T = TypeVar("T")

PATIENCE = 5.0  # seconds a read waits for a stripe to become readable again
FIRST_WAIT = 0.05
LONGEST_WAIT = 0.5
# A node ZooKeeper dropped this recently may be back in a moment (its session expired
# in a ZooKeeper failover and it is registering again): still worth waiting for.
RECENTLY = 10.0


def waits(patience: float) -> Iterator[float]:
    """The pauses between tries: doubling from FIRST_WAIT up to LONGEST_WAIT, adding up
    to ``patience`` at most (none for a patience of 0)."""
    spent, wait = 0.0, FIRST_WAIT
    while spent < patience:
        step = min(wait, LONGEST_WAIT, patience - spent)
        yield step
        spent += step
        wait *= 2


async def unmoved() -> bool:
    """For callers whose every try reads by the placement as it is then."""
    return False


def hopeful(exc: DataUnavailableError) -> bool:
    """For callers for whom giving up costs more than waiting the patience out."""
    return True


def may_come_back(holders: Sequence[str], live: Collection[str], k: int) -> bool:
    """Whether waiting can make a stripe readable: k of its slots (``holders``, "" for
    a vacant one) have a live holder (paused, restarting, catching up) or none yet (a
    writer hands a vacant slot to the first node back, and its copy may be a stray's)."""
    return sum(1 for n in holders if not n or n in live) >= k


async def patiently(
    attempt: Callable[[int], Awaitable[T]],
    moved: Callable[[], Awaitable[bool]],
    hopeful: Callable[[DataUnavailableError], bool],
    sleep: Callable[[float], Awaitable[None]],
    patience: float,
) -> T:
    """Run ``attempt(try number)`` until it returns, waiting between tries while it
    finds a stripe unavailable and ``hopeful`` of it; a try follows at once when
    ``moved()`` says the region's placement changed since the last. The last error,
    once ``patience`` is spent, names how long it waited."""
    pauses = waits(patience)
    tries, just_moved, waited = 0, False, 0.0
    start = time.monotonic()
    while True:
        try:
            return await attempt(tries)
        except DataLostError:
            raise
        except DataUnavailableError as exc:
            tries += 1
            # A late watch costs one quick try, not a wait; a placement that keeps
            # moving still waits between tries.
            just_moved = not just_moved and await moved()
            if just_moved:
                continue
            pause = next(pauses, None) if hopeful(exc) else None
            if pause is not None and time.monotonic() - start + pause > patience:
                pause = None  # slow tries spent it (each may wait seconds on a node)
            if pause is None:
                if waited:
                    spent = time.monotonic() - start
                    exc.args = (f"{exc} (still so after {spent:.1f}s of waiting)",)
                raise
            await sleep(pause)
            waited += pause


async def read_into(c: Any, name: str, offset: int, out: memoryview, size: int | None) -> int:
    """``AsyncClient.read_into``: fill ``out`` from ``offset`` of region ``name``,
    patiently; returns how many bytes (short at the region's end)."""
    metas = [await c.regions.get(name)]

    async def attempt(tries: int) -> int:
        meta = metas[-1] if tries == 0 else await c.regions.get(name, sync=True)
        if tries == 0 and unplaced(meta):
            # Our watch may be late with a slab another writer placed: zeros only if
            # the record says so as it is now.
            meta = await c.regions.get(name, fresh=True)
        metas[:] = [meta]
        n = length(meta)
        view = c.view(meta)
        if tries:  # read after a sync, in this very try: what it says of "paged" holds
            view = dataclasses.replace(view, synced=True)
        try:
            if n:
                await c.io.read_into(view, offset, out[:n])
        except DataLostError as exc:
            if not extents.contains(meta.lost, exc.stripe):  # else the leader knows
                await c.regions.report_loss(name, f"slab {exc.slab} stripe {exc.stripe}")
            raise
        return n

    def length(meta: RegionMeta) -> int:
        return max(0, min(len(out), (meta.size if size is None else size) - offset))

    def unplaced(meta: RegionMeta) -> bool:
        layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
        slabs = layout.slabs_of(offset, offset + length(meta))
        return any(s not in meta.slabs for s in slabs)

    async def moved() -> bool:  # our watch may be late: the placement as it is now
        now = await c.regions.get(name, fresh=True)
        return bool((now.slabs, now.partial) != (metas[-1].slabs, metas[-1].partial))

    def hopeful(exc: DataUnavailableError) -> bool:
        view = c.view(metas[-1])
        holders = [n for n, _ in view.placement(exc.stripe)]
        live = c.members.lately_live(RECENTLY)
        return may_come_back(holders, live, view.layout.policy.k)

    return await patiently(attempt, moved, hopeful, asyncio.sleep, c.read_patience)
