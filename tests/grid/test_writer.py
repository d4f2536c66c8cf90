"""The write protocol against in-process nodes: recovery's choices, a node that misses
a commit, a handoff, a torn read repaired, a stale writer fenced off. Each case sets
up on the nodes' stores what a crash or a race would have left, then lets the real
client take it from there."""

from __future__ import annotations

import asyncio
import os

import pytest

import ecmem
from ecmem import handoff, strays, wire
from ecmem.aio import AsyncClient
from ecmem.layout import Layout
from ecmem.meta.model import RegionMeta
from tests.grid.grid import BROKEN, Grid, GridNode

CHUNK = 4096  # 16 KiB stripes of ec:4+2: small, fast
E1, E2 = 1 << 32, 2 << 32


async def make_region(c: AsyncClient, name: str, stripes: int, **kw: object) -> RegionMeta:
    await c.create_region(name, stripes * 4 * CHUNK, "ec:4+2", chunk=CHUNK, **kw)  # type: ignore[arg-type]
    return await c.region_meta(name)


async def as_if_written_at(c: AsyncClient, name: str, epoch: int) -> RegionMeta:
    """The region's record as a writer of ``epoch`` (since dead) left it."""

    def bump(m: RegionMeta) -> RegionMeta:
        m.epoch = epoch
        return m

    return await c.regions.update(name, bump)


def fragments(meta: RegionMeta, data: bytes) -> list[bytes]:
    return Layout.of(meta.policy, meta.chunk, meta.slab_stripes).policy.encode(data)


def stripe(seed: int) -> bytes:
    return os.urandom(4 * CHUNK) if seed < 0 else bytes([seed]) * (4 * CHUNK)


async def test_recovery_keeps_the_prefix_before_a_hole(grid: Grid) -> None:
    c = await grid.client()
    meta = await make_region(c, "r", 3)
    meta = await as_if_written_at(c, "r", 1)
    a, b = stripe(1), stripe(3)
    sd = 4 * CHUNK
    grid.stage(meta, 0, E1 + 1, fragments(meta, a), (0, 0, sd))
    # E1 + 2 never reached any node; E1 + 3 is whole but follows a hole.
    grid.stage(meta, 2, E1 + 3, fragments(meta, b), (2, 2, 3 * sd))
    await c.pwrite("r", sd, b"x")  # takes the region over: epoch 2, recovery
    assert await c.pread("r", 0, sd) == a
    assert await c.pread("r", 2 * sd, sd) == bytes(sd)  # dropped: a hole again
    for node in grid.holders(meta):
        assert not [e for e in node.store.entries(meta.id, staged=True) if e[3] == E1 + 3]


async def test_recovery_follows_writes_across_epochs(grid: Grid) -> None:
    c = await grid.client()
    meta = await make_region(c, "r", 1)
    meta = await as_if_written_at(c, "r", 2)
    a, b = stripe(1), stripe(2)
    sd = 4 * CHUNK
    grid.stage(meta, 0, E1 + 1, fragments(meta, a), (0, 0, sd))
    grid.stage(meta, 0, E2 + 1, fragments(meta, b), (0, 0, sd))  # the next writer's first
    w = await c.writer("r")
    assert w.epoch == 3 and w.base == E2 + 1
    assert await c.pread("r", 0, sd) == b


async def test_recovery_drops_a_write_with_too_few_fragments(grid: Grid) -> None:
    c = await grid.client()
    meta = await make_region(c, "r", 1)
    meta = await as_if_written_at(c, "r", 1)
    sd = 4 * CHUNK
    grid.stage(meta, 0, E1 + 1, fragments(meta, stripe(1)), (0, 0, sd), indexes=[0, 1, 2])
    w = await c.writer("r")
    assert w.base == 0
    assert await c.pread("r", 0, sd) == bytes(sd)


async def test_a_node_that_misses_a_commit_leaves_the_placement(grid: Grid) -> None:
    c = await grid.client()
    meta = await make_region(c, "r", 1)
    victim = grid.holders(meta)[2]
    victim.set(BROKEN, wire.Commit)
    data = stripe(-1)
    await c.pwrite("r", 0, data)  # acknowledged: the other five committed
    after = await c.region_meta("r")
    assert after.slabs[0][2] == ("", "")  # vacant until rebuilt
    victim.heal()
    assert await c.pread("r", 0, len(data)) == data


async def test_a_node_that_misses_a_commit_leaves_only_the_slabs_it_was_written_in(
    grid: Grid,
) -> None:
    c = await grid.client()
    sd = 4 * CHUNK
    meta = await make_region(c, "r", 3, slab_size=sd)  # three slabs of one stripe
    old = stripe(-1) * 3
    await c.pwrite("r", 0, old)
    victim = grid.holders(meta, 1)[2]
    slot = {s: [n for n, _ in p].index(victim.id) for s, p in meta.slabs.items()}
    victim.set(BROKEN, wire.Commit)
    new = stripe(-2)
    await c.pwrite("r", sd, new)  # slab 1 only: the other five committed it
    after = await c.region_meta("r")
    assert after.slabs[1][slot[1]] == ("", "")  # it may hold the write staged, never committed
    assert after.slabs[0][slot[0]][0] == victim.id  # told of every write there
    assert after.slabs[2][slot[2]][0] == victim.id
    victim.heal()
    reader = await grid.client()
    assert await reader.pread("r", 0, 3 * sd) == old[:sd] + new + old[2 * sd :]
    victim.set(BROKEN, wire.Commit)
    await c.pwrite("r", 0, new * 3)  # every slab: it leaves the two it still held
    after = await c.region_meta("r")
    assert all(after.slabs[s][slot[s]] == ("", "") for s in range(3))
    victim.heal()
    assert await reader.pread("r", 0, 3 * sd) == new * 3


async def test_a_failed_put_hands_the_fragment_off(grid: Grid) -> None:
    await grid.add("n7")
    c = await grid.client()
    meta = await make_region(c, "r", 1)
    victim = grid.holders(meta)[1]
    spare = next(n for n in grid.nodes if n not in {x for x, _ in meta.slabs[0]})
    victim.set(BROKEN, wire.Put)
    data = stripe(-1)
    await c.pwrite("r", 0, data)
    after = await c.region_meta("r")
    assert after.slabs[0][1][0] == spare and (0, 1) in after.partial
    victim.heal()
    assert await c.pread("r", 0, len(data)) == data


async def test_a_write_committed_in_one_slab_only_never_reads_torn(grid: Grid) -> None:
    """A two-stripe write whose commit reached the nodes of its first stripe only (each
    stripe in its own slab, on its own six nodes): a reader gets the whole write."""
    for i in range(7, 13):
        await grid.add(f"n{i}")
    c = await grid.client()
    meta = await make_region(c, "r", 2, slab_size=4 * CHUNK)
    holders = {n: inc for n, inc in ((x.id, x.info.incarnation) for x in grid.nodes.values())}

    def apart(m: RegionMeta) -> RegionMeta:
        m.slabs = {
            0: [(f"n{i}", holders[f"n{i}"]) for i in range(1, 7)],
            1: [(f"n{i}", holders[f"n{i}"]) for i in range(7, 13)],
        }
        m.epoch = 1
        return m

    meta = await c.regions.update("r", apart)
    sd = 4 * CHUNK
    a, b = stripe(5), stripe(6)
    grid.stage(meta, 0, E1 + 1, fragments(meta, a), (0, 1, 2 * sd))
    grid.stage(meta, 1, E1 + 1, fragments(meta, b), (0, 1, 2 * sd))
    for node in grid.holders(meta, 0):
        node.store.commit(meta.id, E1 + 1)
    reader = await grid.client()
    assert await reader.pread("r", 0, 2 * sd) == a + b


async def test_a_stale_writer_is_fenced_off(grid: Grid) -> None:
    old, new = await grid.client(), await grid.client()
    await make_region(old, "r", 1)
    sd = 4 * CHUNK
    await old.pwrite("r", 0, stripe(1))
    grid.drop_lease("r")  # as when the old writer's session expires while it is paused
    await new.pwrite("r", 0, stripe(2))
    with pytest.raises(ecmem.Fenced):
        await old.pwrite("r", 0, stripe(3))
    assert await new.pread("r", 0, sd) == stripe(2)


async def test_a_first_write_staged_but_not_committed_reads_as_the_hole_it_still_is(
    grid: Grid,
) -> None:
    """Its stripes are recorded as written (and pending) before the commit reaches the
    nodes: a reader meanwhile finds only staged copies and reads zeros, not 'lost'; once
    no copy is left anywhere, it is lost."""
    c = await grid.client()
    meta = await make_region(c, "r", 1)
    sd = 4 * CHUNK

    def as_left(m: RegionMeta) -> RegionMeta:
        m.epoch, m.written, m.pending = 1, [(0, 1)], [(0, 1, E1 + 1)]
        return m

    meta = await c.regions.update("r", as_left)
    grid.stage(meta, 0, E1 + 1, fragments(meta, stripe(7)), (0, 0, sd))
    reader = await grid.client()
    assert await reader.pread("r", 0, sd) == bytes(sd)
    for node in grid.holders(meta):
        node.store.delete(meta.id, 0)
    with pytest.raises(ecmem.DataLostError):
        await reader.pread("r", 0, sd)


async def test_a_slot_handed_back_to_its_old_holder_never_serves_its_old_copies(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder misses a write and leaves the slab; later its slot (vacant, no spare
    node) is handed back to it. Its copies from before are stale: a read of the stripe
    it missed returns the acknowledged write, never what the node still holds."""
    c = await grid.client()
    meta = await make_region(c, "r", 2)
    sd = 4 * CHUNK
    await c.pwrite("r", 0, stripe(1) + stripe(2))
    victim = grid.holders(meta)[1]
    victim.set(BROKEN, wire.Put)
    newer = stripe(3)
    await c.pwrite("r", 0, newer)  # degraded: no spare node, fragment 1 left vacant
    assert (await c.region_meta("r")).slabs[0][1] == ("", "")
    victim.heal()
    monkeypatch.setattr(handoff, "VACANT_RETRY", 0.05)  # a vacant slot is looked at again
    await asyncio.sleep(0.06)  # after a while, not on every stripe
    await c.pwrite("r", sd, stripe(4))  # the vacant slot goes to the only node not in it
    after = await c.region_meta("r")
    assert after.slabs[0][1][0] == victim.id and (0, 1) in after.partial
    # The victim still holds stripe 0's fragment 1 as it was before it missed a write.
    assert any(e[1] == 0 and e[2] == 1 for e in victim.store.entries(meta.id, staged=False))
    reader = await grid.client()
    assert await reader.pread("r", CHUNK, CHUNK) == newer[CHUNK : 2 * CHUNK]
    assert await reader.pread("r", 0, sd) == newer
    assert await c.pread("r", sd, sd) == stripe(4)


async def test_removing_a_region_whose_record_changed_meanwhile_reads_it_again(
    grid: Grid,
) -> None:
    c = await grid.client()
    await c.create_region("gone", 0, "ec:4+2", chunk=16384)
    await c.pwrite("gone", 0, os.urandom(4 * 16384))
    await c.release("gone")
    zk = c.meta.zk
    real = zk.delete
    bumped = []

    def delete(path: str, version: int = -1, recursive: bool = False) -> None:
        if path == c.meta.paths.region("gone") and not bumped:
            data, _ = zk.get(path)
            zk.set(path, data)  # as a rebuild's placement change would, in between
            bumped.append(path)
        real(path, version=version, recursive=recursive)

    zk.delete = delete
    try:
        await c.delete_region("gone")
    finally:
        zk.delete = real
    assert bumped and not await c.exists("gone")
    for node in grid.nodes.values():
        assert list(node.store.entries()) == []  # its fragments deleted everywhere


async def test_a_region_file_whose_store_failed_keeps_failing_and_invites_no_retry(
    grid: Grid,
) -> None:
    c = await grid.client()
    chunk = 16384
    await c.create_region("rf", 0, "ec:4+2", chunk=chunk)
    await c.pwrite("rf", 0, os.urandom(4 * chunk))
    await c.release("rf")
    meta = await c.region_meta("rf")
    f = await c.open("rf", "r+b")
    for node, _ in meta.slabs[0][:3]:  # more than M of its nodes, and no node to hand to
        grid.nodes[node].set(BROKEN)
    await f.write(os.urandom(4 * chunk))  # a whole stripe: stored in the background
    for _ in range(2):  # the second flush fails the same way: its bytes are gone
        with pytest.raises(ecmem.EcmemError) as err:
            await f.flush()
        assert not err.value.retriable
        assert any("reopen the region" in n for n in getattr(err.value, "__notes__", []))
    for n in grid.nodes.values():
        n.heal()
    with pytest.raises(ecmem.EcmemError):
        await f.close()


async def test_a_file_opened_for_writing_sees_the_size_its_recovery_published(
    grid: Grid,
) -> None:
    """A writer died after staging a write that grew the region and before publishing
    the size: the handle whose open recovered the write reads it and agrees with stat."""
    c = await grid.client()
    meta = await make_region(c, "r", 1)
    meta = await as_if_written_at(c, "r", 1)
    sd = 4 * CHUNK
    a, b = stripe(1), stripe(2)
    grid.stage(meta, 0, E1 + 1, fragments(meta, a), (0, 0, sd))
    grid.stage(meta, 1, E1 + 2, fragments(meta, b), (1, 1, 2 * sd))
    assert (await c.stat("r")).size == sd
    async with c.open("r", "r+b") as f:
        assert (await c.stat("r")).size == 2 * sd
        assert f.size == 2 * sd
        f.seek(sd)
        assert await f.read(sd) == b
        f.seek(0, os.SEEK_END)
        assert f.tell() == 2 * sd


async def test_a_writer_fills_a_vacant_slot_of_a_slab_it_is_not_writing(grid: Grid) -> None:
    """A slot of slab 0 is vacant (its holder missed a commit, say); the writer keeps
    writing slab 1 only, and never gives its lease to the rebuilder. It offers the slot
    to the spare itself and catches it up: with two more of slab 0's nodes gone, slab 0
    still reads."""
    await grid.add("n7")
    c = await grid.client()
    sd = 4 * CHUNK
    meta = await make_region(c, "r", 2, slab_size=sd)
    data = os.urandom(2 * sd)
    await c.pwrite("r", 0, data)
    gone = meta.slabs[0][1][0]

    def vacate(m: RegionMeta) -> RegionMeta:
        m.slabs[0][1] = ("", "")
        return m

    await c.regions.update("r", vacate)
    await grid.stop(gone)
    for _ in range(300):
        await c.pwrite("r", sd, data[sd:])  # slab 1 only
        after = await c.region_meta("r")
        if all(n for n, _ in after.slabs[0]) and not after.partial:
            break
        await asyncio.sleep(0.02)
    assert all(n for n, _ in after.slabs[0]) and not after.partial, after.slabs[0]
    for n in [n for n, _ in after.slabs[0] if n != after.slabs[0][1][0]][:2]:
        await grid.stop(n)
    reader = await grid.client()
    assert await reader.pread("r", 0, sd) == data[:sd]


async def two_stripes_and_a_seventh(grid: Grid) -> tuple[GridNode, AsyncClient, RegionMeta, bytes]:
    """A seventh node to hand slots to, and region "r" of two stripes written."""
    new = await grid.add("n7")
    c = await grid.client()
    await make_region(c, "r", 2)
    data = stripe(-1) + stripe(-1)
    await c.pwrite("r", 0, data)
    await c.release("r")
    return new, c, await c.region_meta("r"), data


async def test_a_read_finds_a_fragment_its_slot_handed_off_on_the_former_holder(
    grid: Grid,
) -> None:
    """A slot was handed off (its new holder lacks the older stripes) and two other
    holders are out: the placement has 3 fragments of 4 needed, and the slot's former
    holder, alive and off the placement, has the fourth. The read takes it from there
    (a version names one write)."""
    new, c, meta, data = await two_stripes_and_a_seventh(grid)

    def hand_off(m: RegionMeta) -> RegionMeta:
        m.hand_off(0, 0, (new.id, new.info.incarnation), E2)
        return m

    await c.regions.update("r", hand_off)
    placed = [n for n, _ in meta.slabs[0]]
    for n in placed[1:3]:
        await grid.stop(n)
    reader = await grid.client()
    assert await reader.pread("r", 0, len(data)) == data


async def test_a_read_finds_a_fragment_on_a_node_that_holds_another_slot_now(
    grid: Grid,
) -> None:
    """Slot 0 went to a newcomer, and its former holder A was given slot 3 later (its
    holder had left): A is on the placement, for another slot, with fragment 0 still
    in memory. With two nodes out the placement has 3 of 4 fragments needed; the
    read asks A for fragment 0 too."""
    new, c, meta, data = await two_stripes_and_a_seventh(grid)
    placed = [n for n, _ in meta.slabs[0]]
    a = grid.nodes[placed[0]]

    def shuffle(m: RegionMeta) -> RegionMeta:
        m.hand_off(0, 0, (new.id, new.info.incarnation), E2)
        m.hand_off(0, 3, (a.id, a.info.incarnation), E2)
        return m

    await c.regions.update("r", shuffle)
    for n in (placed[1], placed[3]):
        await grid.stop(n)
    reader = await grid.client()
    assert await reader.pread("r", 0, len(data)) == data


async def test_a_writer_catches_a_handed_off_slot_up_and_settles_it(grid: Grid) -> None:
    """A holder fails a write and its slot goes to a spare, which lacks the slab's older
    stripes. The writer, which never gives its lease to the rebuilder, folds them onto
    the spare itself and records the slot whole: with the old holder and two more
    nodes gone, every stripe still reads."""
    await grid.add("n7")
    c = await grid.client()
    meta = await make_region(c, "r", 4)
    sd = 4 * CHUNK
    data = bytearray(os.urandom(4 * sd))
    await c.pwrite("r", 0, data)
    victim = grid.holders(meta)[1]
    victim.set(BROKEN, wire.Put, wire.PutSlice)
    data[:sd] = stripe(5)
    await c.pwrite("r", 0, data[:sd])  # fragment 1 of stripe 0 goes to n7, partially
    after = await c.region_meta("r")
    assert after.slabs[0][1][0] == "n7", after.slabs[0]
    for _ in range(500):
        after = await c.region_meta("r")
        if not after.partial:
            break
        await asyncio.sleep(0.01)
    assert not after.partial, f"the writer left slot {after.partial} partial"
    await grid.stop(victim.id)
    for n in [n for n, _ in after.slabs[0] if n != "n7"][2:4]:
        await grid.stop(n)
    reader = await grid.client()
    assert await reader.pread("r", 0, 4 * sd) == data


async def test_a_reader_whose_watch_is_late_reads_by_the_placement_as_it_is_now(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader's cached placement still names a slot's old holder (its watch is late),
    which answers with the version it kept; with two more holders out the stripe looks
    unreadable by that placement. The reader reads the record again and succeeds."""
    await grid.add("n7")
    c = await grid.client()
    meta = await make_region(c, "r", 1)
    sd = 4 * CHUNK
    await c.pwrite("r", 0, stripe(1))
    reader = await grid.client()
    assert await reader.pread("r", 0, sd) == stripe(1)
    stale = await reader.region_meta("r")
    victim = grid.holders(meta)[1]
    victim.set(BROKEN, wire.Put, wire.PutSlice)
    await c.pwrite("r", 0, stripe(2))  # slot 1 goes to n7
    for _ in range(500):
        now = await c.region_meta("r")
        if now.slabs[0][1][0] == "n7" and not now.partial:
            break
        await asyncio.sleep(0.01)
    assert now.slabs[0][1][0] == "n7" and not now.partial
    for _ in range(500):  # the reader's watch catches up; then make it late again
        if reader.regions.cached("r") == now:
            break
        await asyncio.sleep(0.01)
    reader.regions.forget("r")
    reader.regions.put(stale, 0)
    assert reader.regions.cached("r") == stale

    async def no_strays(*_: object) -> dict[int, object]:
        return {}

    monkeypatch.setattr(strays, "find", no_strays)  # the placement alone decides
    for n in (meta.slabs[0][0][0], meta.slabs[0][2][0]):
        await grid.stop(n)
    assert await reader.pread("r", 0, sd) == stripe(2)


async def test_an_overwrite_returns_committed_while_a_growing_write_waits_for_its_size(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Write A grows the region, and its caller is slow to record the new size; write B,
    an overwrite begun after A, must still return only once committed (seen by a reader
    that starts after), not after a round that stopped short at A."""
    c = await grid.client()
    meta = await make_region(c, "r", 2)
    sd = 4 * CHUNK
    await c.pwrite("r", 0, stripe(1))
    slow = c.publish_size

    async def publish_late(name: str, size: int, *, exact: bool = False) -> RegionMeta:
        await asyncio.sleep(3)
        return await slow(name, size, exact=exact)

    monkeypatch.setattr(c, "publish_size", publish_late)
    grows = asyncio.ensure_future(c.pwrite("r", 2 * sd, stripe(2)))
    w = c.writer_of("r")
    for _ in range(200):
        if w.unpublished:
            break
        await asyncio.sleep(0.01)
    assert w.unpublished, "the growing write never got staged"
    await c.pwrite("r", 0, stripe(3))
    reader = await grid.client()
    assert await reader.pread("r", 0, sd) == stripe(3)
    await grows
    assert await reader.pread("r", 2 * sd, sd) == stripe(2)
    assert meta.size == 2 * sd
