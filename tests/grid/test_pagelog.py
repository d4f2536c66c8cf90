"""Page patches against in-process nodes: a small overwrite goes to M+1 nodes as a
patch; readers see it healthy (laid over by the fragment's node) and degraded
(decoded, then laid over from a parity node); a later whole or partial write folds it;
a writer that dies leaves patches a new writer keeps (one copy suffices) and folds;
a stripe patched often is folded by its writer."""

from __future__ import annotations

import asyncio
import os

import pytest
from crc32c import crc32c

from ecmem import pagelog, wire
from ecmem.aio import AsyncClient
from ecmem.layout import Layout
from ecmem.meta.model import RegionMeta
from tests.grid.grid import BROKEN, SLOW, Grid

CHUNK = 16384  # 64 KiB stripes of ec:4+2
SD = 4 * CHUNK
E = 1 << 32


async def region(c: AsyncClient, stripes: int = 2) -> tuple[RegionMeta, bytearray]:
    await c.create_region("r", 0, "ec:4+2", chunk=CHUNK)
    data = os.urandom(stripes * SD)
    await c.pwrite("r", 0, data)
    return await c.region_meta("r"), bytearray(data)


def patches_on(grid: Grid, meta: RegionMeta) -> dict[str, list[tuple[int, int, int]]]:
    """Node -> (stripe, index, version) of each patch it holds."""
    out = {}
    for n in grid.holders(meta):
        st = n.store.region(meta.id)
        out[n.id] = [(s, p.index, p.version) for s, p in st.patches.entries()]
    return out


def sent(grid: Grid, meta: RegionMeta, kind: type[wire.Message]) -> int:
    return sum(isinstance(m, kind) for n in grid.holders(meta) for m in n.server.seen)


async def test_a_page_overwrite_is_a_patch_on_m_plus_1_nodes_read_healthy_and_degraded(
    grid: Grid,
) -> None:
    c = await grid.client()
    meta, model = await region(c)
    page = os.urandom(4096)
    await c.pwrite("r", CHUNK + 8192, page)  # stripe 0, data fragment 1
    model[CHUNK + 8192 : CHUNK + 12288] = page
    assert sent(grid, meta, wire.Patch) == 3 and sent(grid, meta, wire.PutSlice) == 0
    held = patches_on(grid, meta)
    holders = [n for n, ps in held.items() if ps]
    placement = [n for n, _ in meta.slabs[0]]
    assert sorted(holders) == sorted([placement[1], placement[4], placement[5]])
    reader = await grid.client()
    assert await reader.pread("r", 0, 2 * SD) == model  # the fragment's node lays it over
    grid.nodes[placement[1]].set(BROKEN, wire.Get)  # now decode fragment 1 around it
    other = await grid.client()
    assert await other.pread("r", CHUNK + 8192, 4096) == page  # a column, decoded
    assert await other.pread("r", 0, SD) == model[:SD]  # the whole stripe, decoded


async def test_patches_come_from_other_nodes_when_a_node_read_from_dies_before_asked(
    grid: Grid,
) -> None:
    # Found by the crash test with M nodes killed: a writer decoded a stripe from its
    # data fragments, the node of the patched one died before it was asked for the
    # patches, and the write failed though a parity node held them.
    c = await grid.client()
    meta, _ = await region(c)
    page = os.urandom(4096)
    await c.pwrite("r", 8192, page)  # stripe 0, data fragment 0
    placement = [n for n, _ in meta.slabs[0]]
    grid.nodes[placement[0]].set(BROKEN, wire.GetPatches)
    view = c.view(await c.region_meta("r"))
    base = grid.nodes[placement[1]].store.stripe_base(meta.id, 0)  # the version decoded
    found = await c.io.patches(view, 0, [0, 1, 2, 3], base, 0)
    header = Layout.of(meta.policy, meta.chunk, meta.slab_stripes).policy.header
    assert found is not None
    assert [(i, at, d) for _, i, at, d in found] == [(0, header + 8192, page)]


async def test_a_later_write_of_a_patched_stripe_folds_its_patches(grid: Grid) -> None:
    c = await grid.client()
    meta, model = await region(c)
    for off in (100, CHUNK + 5, 3 * CHUNK + 4000):  # three fragments of stripe 0
        data = os.urandom(512)
        await c.pwrite("r", off, data)
        model[off : off + 512] = data
    across = os.urandom(300)  # across two fragments: not a patch, so stripe 0 goes whole
    await c.pwrite("r", CHUNK - 100, across)
    model[CHUNK - 100 : CHUNK + 200] = across
    await c.commit("r")
    assert all(not ps for ps in patches_on(grid, meta).values())
    policy = Layout.of(meta.policy, meta.chunk, meta.slab_stripes).policy
    whole = policy.encode(bytes(model[:SD]))
    for i, (n, _) in enumerate(meta.slabs[0]):
        r = grid.nodes[n].store.get(meta.id, 0, i, 0, 1 << 30)
        got = b"".join(bytes(p) for p in (r.data if isinstance(r.data, tuple) else (r.data,)))
        assert got == whole[i][: len(got)]
    assert await (await grid.client()).pread("r", 0, 2 * SD) == model


async def test_concurrent_page_writes_to_one_stripe_keep_their_order(grid: Grid) -> None:
    c = await grid.client()
    meta, model = await region(c, stripes=1)
    writes = [(o * 512 % (SD - 4096), os.urandom(4096)) for o in range(40)]
    await asyncio.gather(*(c.pwrite("r", off, d) for off, d in writes))
    for off, d in writes:  # queued in this order: later ones win where they overlap
        model[off : off + 4096] = d
    assert await (await grid.client()).pread("r", 0, SD) == model


async def test_a_stripe_patched_often_is_folded_by_its_writer(grid: Grid) -> None:
    c = await grid.client()
    meta, model = await region(c, stripes=1)
    for i in range(pagelog.FOLD.after + 3):
        data = os.urandom(1024)  # 64 of them hold a quarter of the stripe: a fold is due
        off = (i * 4096) % SD
        await c.pwrite("r", off, data)
        model[off : off + 1024] = data
    left = sum(len(ps) for ps in patches_on(grid, meta).values())
    assert left <= 3 * 3  # the fold took the first 64; three at most since
    assert await (await grid.client()).pread("r", 0, SD) == model


async def test_unfolded_patch_bytes_stay_under_their_bound(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pagelog, "UNFOLDED_MAX", 5 * 4096)
    c = await grid.client()
    meta, model = await region(c, stripes=8)
    w = c._writers["r"]
    for i in range(24):  # one page per stripe at a time: no stripe's fold is due
        off = (i % 8) * SD + (i * 4096) % SD
        data = os.urandom(4096)
        await c.pwrite("r", off, data)
        model[off : off + 4096] = data
        assert w.patched.total < pagelog.UNFOLDED_MAX
        held = sum(len(data) for ps in patches_on_bytes(grid, meta) for data in ps)
        assert held <= 3 * pagelog.UNFOLDED_MAX  # M+1 copies of what is unfolded
    assert await (await grid.client()).pread("r", 0, 8 * SD) == model


async def test_a_region_file_s_flushes_fold_what_its_page_writes_left(grid: Grid) -> None:
    c = await grid.client()
    meta, model = await region(c, stripes=1)
    await c.release("r")
    async with c.open("r", "r+b") as f:
        for i in range(pagelog.FOLD.after + 3):
            data = os.urandom(1024)
            off = (i * 4096) % SD
            await f.seek(off)
            await f.write(data)
            await f.flush()  # each one a page patch, committed
            model[off : off + 1024] = data
        w = c._writers["r"]
        assert w.patched.count(0) < pagelog.FOLD.after
    left = sum(len(ps) for ps in patches_on(grid, meta).values())
    assert left <= 3 * 3
    assert await (await grid.client()).pread("r", 0, SD) == model


async def test_cutting_a_region_short_forgets_the_cut_stripes_unfolded_patches(
    grid: Grid,
) -> None:
    c = await grid.client()
    meta, model = await region(c, stripes=4)
    for stripe in range(4):
        await c.pwrite("r", stripe * SD + 4096, os.urandom(4096))
    w = c._writers["r"]
    assert w.patched.total == 4 * 4096
    await c.truncate("r", 2 * SD)
    assert w.patched.total == 2 * 4096 and sorted(w.patched.stripes) == [0, 1]


async def test_a_read_across_fragments_of_a_stripe_one_of_them_patched_is_not_torn(
    grid: Grid,
) -> None:
    # Found by the roundtrip property test: the second write is stripe 0 whole and a
    # one-byte patch of stripe 1; a read of stripe 1's two data fragments saw the patch
    # on one and not the other (it has none) and took the other's version as the one
    # seen, so stripe 0's write looked torn on every retry.
    c = await grid.client()
    await c.create_region("t", 0, "ec:2+1", chunk=4096, slab_size=4 * 2 * 4096)
    first, second = os.urandom(12289), os.urandom(8193)
    await c.pwrite("t", 0, first)
    await c.pwrite("t", 0, second)
    model = second + first[8193:]
    reader = await grid.client()
    assert await reader.pread("t", 0, 12299) == model
    assert await c.pread("t", 0, 12299) == model


async def test_growing_a_patched_stripe_cut_short_reads_zeros_between(grid: Grid) -> None:
    # Found by the roundtrip property test: the patched stripe was read whole for the
    # growing write and its bytes past the end (cut off by the truncation) came back.
    c = await grid.client()
    await c.create_region("g", 0, "ec:4+2", chunk=4096)
    await c.pwrite("g", 0, b"ab")
    await c.pwrite("g", 0, b"c")  # a page patch
    await c.truncate("g", 1)
    await c.pwrite("g", 2, b"d")
    assert await c.pread("g", 0, 10) == b"c\x00d"
    assert await (await grid.client()).pread("g", 0, 10) == b"c\x00d"


def patches_on_bytes(grid: Grid, meta: RegionMeta) -> list[list[bytes]]:
    return [
        [p.data for _, p in n.store.region(meta.id).patches.entries()] for n in grid.holders(meta)
    ]


async def test_patches_a_dead_writer_left_are_kept_from_one_copy_and_folded(grid: Grid) -> None:
    c = await grid.client()
    meta, model = await region(c, stripes=1)
    await c.release("r")
    await c.close()

    def bump(m: RegionMeta) -> RegionMeta:
        m.epoch = 2  # a writer of epoch 2 (since dead) wrote what is staged below
        return m

    c2 = await grid.client()
    meta = await c2.regions.update("r", bump)
    placement = [grid.nodes[n] for n, _ in meta.slabs[0]]
    base = max(e[3] for e in placement[0].store.entries(meta.id))
    a, b = os.urandom(4096), os.urandom(100)
    header = Layout.of(meta.policy, meta.chunk, meta.slab_stripes).policy.header
    # Patch 1 reached all three of its nodes; patch 2 only one parity node.
    for node, holder in ((placement[2], 2), (placement[4], 4), (placement[5], 5)):
        node.store.fence(meta.id, 2)
        node.store.put_patch(meta.id, 0, 2, holder, 2 * E + 1, header, crc32c(a), a, (0, 0, SD))
    placement[5].store.put_patch(meta.id, 0, 3, 5, 2 * E + 2, header + 50, crc32c(b), b, (0, 0, SD))
    model[2 * CHUNK : 2 * CHUNK + 4096] = a
    model[3 * CHUNK + 50 : 3 * CHUNK + 150] = b
    w = await c2.writer("r")  # takes over: keeps both, folds stripe 0
    assert w.epoch == 3 and base < w.committed
    assert all(not ps for ps in patches_on(grid, meta).values())
    assert await (await grid.client()).pread("r", 0, SD) == model


async def test_a_log_node_that_cannot_take_a_patch_gets_the_whole_stripe(grid: Grid) -> None:
    c = await grid.client()
    meta, model = await region(c, stripes=1)
    parity = grid.nodes[meta.slabs[0][4][0]]
    parity.store.delete(meta.id)  # as if it lost its fragment without telling anyone
    data = os.urandom(4096)
    await c.pwrite("r", 4096, data)
    model[4096:8192] = data
    assert all(not ps for ps in patches_on(grid, meta).values())  # the whole stripe went
    assert await (await grid.client()).pread("r", 0, SD) == model


async def test_a_read_around_a_node_while_its_stripe_is_folded_reads_it_again(
    grid: Grid,
) -> None:
    # Found by the page-writes chaos scenario (seed 16): a reader decoded a column of
    # the old version, a whole write of the stripe was committed (its nodes dropped the
    # patches it holds) before the reader asked for the patches, and it returned the
    # page as it was before an acknowledged patch.
    c = await grid.client()
    meta, model = await region(c, stripes=1)
    page = os.urandom(4096)
    at = CHUNK + 8192  # stripe 0, data fragment 1
    await c.pwrite("r", at, page)
    placement = [n for n, _ in meta.slabs[0]]
    grid.nodes[placement[1]].set(BROKEN, wire.Get)  # reads decode fragment 1 around it
    for n in placement[2:]:
        grid.nodes[n].set(SLOW, wire.GetPatches, delay=0.3)
    reader = await grid.client()
    read = asyncio.ensure_future(reader.pread("r", at, 4096))
    await asyncio.sleep(0.1)  # the column is decoded; the patches are on their way
    new = os.urandom(SD)
    await c.pwrite("r", 0, new)  # the stripe whole, committed: the patch is dropped
    assert await read in (page, new[at : at + 4096])
