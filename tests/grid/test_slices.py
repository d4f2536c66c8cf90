"""Small overwrites go as slices (when page patches are off, or a write is not one
fragment's bytes): each node gets only the column of its fragment that changes and
stages the stripe's new version from the one it holds. These cases check the bytes
every fragment ends up with (parity included) and the fallbacks to a whole stripe
write when a node cannot take a slice."""

from __future__ import annotations

import asyncio
import os

import pytest

from ecmem import wire, writepath
from ecmem.aio import AsyncClient
from ecmem.errors import EcmemError
from ecmem.layout import Layout
from ecmem.meta.model import RegionMeta
from tests.grid.grid import BROKEN, HANG, Grid

CHUNK = 16384  # 64 KiB stripes of ec:4+2
SD = 4 * CHUNK


@pytest.fixture(autouse=True)
def slices_not_patches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writepath, "PAGE_PATCHES", False)


async def region(c: AsyncClient, name: str, policy: str, stripes: int = 2) -> RegionMeta:
    await c.create_region(name, 0, policy, chunk=CHUNK)
    data = os.urandom(stripes * Layout.of(policy, CHUNK, 1).stripe_data)
    await c.pwrite(name, 0, data)
    return await c.region_meta(name)


def slices(grid: Grid, meta: RegionMeta) -> int:
    return sum(isinstance(m, wire.PutSlice) for n in grid.holders(meta) for m in n.server.seen)


def committed(grid: Grid, meta: RegionMeta, stripe: int) -> dict[int, bytes]:
    out = {}
    for i, (node_id, _) in enumerate(meta.slabs[stripe // meta.slab_stripes]):
        r = grid.nodes[node_id].store.get(meta.id, stripe, i, 0, 1 << 30)
        parts = r.data if isinstance(r.data, tuple) else (r.data,)
        out[i] = b"".join(bytes(p) for p in parts)
    return out


async def test_a_page_overwrite_sends_slices_and_leaves_every_fragment_right(grid: Grid) -> None:
    c = await grid.client()
    meta = await region(c, "r", "ec:4+2")
    before = await c.pread("r", 0, 2 * SD)
    model = bytearray(before)
    # One page inside a chunk, one across two chunks, one byte, one at the very end.
    for off, n in ((5000, 4096), (CHUNK - 100, 300), (SD + 7, 1), (2 * SD - 4096, 4096)):
        data = os.urandom(n)
        await c.pwrite("r", off, data)
        model[off : off + n] = data
    assert slices(grid, meta) == 4 * 6  # each write: one slice to each of the six nodes
    assert await c.pread("r", 0, 2 * SD) == model
    policy = Layout.of(meta.policy, meta.chunk, meta.slab_stripes).policy
    for s in (0, 1):
        frags = committed(grid, meta, s)
        whole = policy.encode(bytes(model[s * SD : (s + 1) * SD]))
        # The slices' parity is exactly what encoding the whole new stripe gives.
        for i in range(6):
            assert frags[i] == whole[i][: len(frags[i])]
            assert not whole[i][len(frags[i]) :].strip(b"\0")


async def test_replicas_take_the_written_bytes_alone(grid: Grid) -> None:
    c = await grid.client()
    meta = await region(c, "r", "rep:3", stripes=1)
    model = bytearray(await c.pread("r", 0, CHUNK))
    data = os.urandom(100)
    await c.pwrite("r", 1000, data)
    model[1000:1100] = data
    sent = [m for n in grid.holders(meta) for m in n.server.seen if isinstance(m, wire.PutSlice)]
    assert len(sent) == 3 and all(len(m.payload) == 100 and m.at == 1000 for m in sent)
    assert all(f == model for f in committed(grid, meta, 0).values())


async def test_a_node_without_the_source_version_gets_the_whole_stripe(grid: Grid) -> None:
    c = await grid.client()
    meta = await region(c, "r", "ec:4+2", stripes=1)
    model = bytearray(await c.pread("r", 0, SD))
    victim = grid.holders(meta)[5]
    victim.store.delete(meta.id)  # as if it lost the fragment without telling anyone
    data = os.urandom(4096)
    await c.pwrite("r", 8192, data)
    model[8192 : 8192 + 4096] = data
    assert await c.pread("r", 0, SD) == model
    policy = Layout.of(meta.policy, meta.chunk, meta.slab_stripes).policy
    whole = policy.encode(bytes(model))
    assert committed(grid, meta, 0)[5] == whole[5]  # the full fragment went instead


async def test_a_node_that_drops_slices_is_handed_off_like_any_failed_write(grid: Grid) -> None:
    await grid.add("n7")
    c = await grid.client()
    meta = await region(c, "r", "ec:4+2", stripes=1)
    model = bytearray(await c.pread("r", 0, SD))
    victim = grid.holders(meta)[1]
    victim.set(BROKEN, wire.PutSlice, wire.Put)
    data = os.urandom(4096)
    await c.pwrite("r", 0, data)
    model[0:4096] = data
    after = await c.region_meta("r")
    assert after.slabs[0][1][0] == "n7" and (0, 1) in after.partial
    victim.heal()
    assert await c.pread("r", 0, SD) == model


async def test_a_slice_write_left_staged_by_its_writer_is_kept_whole_by_the_next(
    grid: Grid,
) -> None:
    c = await grid.client()
    meta = await region(c, "r", "ec:4+2", stripes=1)
    model = bytearray(await c.pread("r", 0, SD))
    for n in grid.holders(meta):
        n.set(BROKEN, wire.Commit)  # the slices stage on all six; no commit lands
    data = os.urandom(4096)
    with pytest.raises(EcmemError):
        await c.pwrite("r", 4096, data)
    for n in grid.holders(meta):
        n.heal()
    staged = [e for n in grid.holders(meta) for e in n.store.entries(meta.id, staged=True)]
    assert len(staged) == 6  # a whole new version of the stripe, staged on every node
    await c.close()
    c2 = await grid.client()
    w = await c2.writer("r")  # recovery: the staged write is whole, so it is kept
    assert w.base == staged[0][3]
    model[4096:8192] = data
    assert await c2.pread("r", 0, SD) == model


async def test_a_degraded_page_read_fetches_columns_not_whole_fragments(grid: Grid) -> None:
    c = await grid.client()
    meta = await region(c, "r", "ec:4+2", stripes=1)
    model = await c.pread("r", 0, SD)
    for victim in (0, 1):  # then a second data fragment's node as well (M = 2)
        grid.holders(meta)[victim].set(BROKEN, wire.Get)
        for n in grid.holders(meta):
            n.server.seen.clear()
        for off, n in ((5000, 4096), (CHUNK - 100, 300), (3 * CHUNK, CHUNK)):
            assert await c.pread("r", off, n) == model[off : off + n]
        gets = [m for x in grid.holders(meta) for m in x.server.seen if isinstance(m, wire.Get)]
        assert gets and max(m.length for m in gets) <= CHUNK  # columns, never whole fragments
        assert any(m.index >= 4 for m in gets)  # parity was read to decode
    grid.holders(meta)[2].set(BROKEN, wire.Get)  # M + 1 fragments gone: an error, not bytes
    with pytest.raises(EcmemError):
        await c.pread("r", 5000, 4096)


async def test_a_degraded_replica_read_takes_the_same_bytes_from_another_copy(
    grid: Grid,
) -> None:
    c = await grid.client()
    meta = await region(c, "r", "rep:3", stripes=2)
    model = await c.pread("r", 0, 2 * CHUNK)
    for n in grid.holders(meta)[:2]:
        n.set(BROKEN, wire.Get)
    for n in grid.holders(meta):
        n.server.seen.clear()
    assert await c.pread("r", CHUNK - 50, 4096) == model[CHUNK - 50 : CHUNK - 50 + 4096]
    gets = [m for x in grid.holders(meta) for m in x.server.seen if isinstance(m, wire.Get)]
    assert max(m.length for m in gets) < CHUNK


async def test_a_page_read_goes_around_a_node_that_hangs_within_tens_of_ms(grid: Grid) -> None:
    c = await grid.client()
    meta = await region(c, "r", "ec:4+2", stripes=1)
    model = await c.pread("r", 0, SD)
    grid.holders(meta)[1].set(HANG, wire.Get)  # fragment 1 holds bytes CHUNK .. 2*CHUNK
    loop = asyncio.get_running_loop()
    for off in (CHUNK + 4096, CHUNK + 8192):
        t = loop.time()
        assert await c.pread("r", off, 4096) == model[off : off + 4096]
        assert loop.time() - t < 0.5  # the hedge, not the 2 s read timeout


async def test_concurrent_page_writes_stage_side_by_side_and_share_commit_rounds(
    grid: Grid,
) -> None:
    c = await grid.client()
    meta = await region(c, "r", "ec:4+2", stripes=4)
    model = bytearray(await c.pread("r", 0, 4 * SD))
    pages = list(range(0, 4 * SD, 4096))[:48]  # several pages of each stripe
    datas = {off: os.urandom(4096) for off in pages}
    for n in grid.holders(meta):
        n.server.seen.clear()
    await asyncio.gather(*(c.pwrite("r", off, d) for off, d in datas.items()))
    for off, d in datas.items():
        model[off : off + 4096] = d
    assert await c.pread("r", 0, 4 * SD) == model
    commits = sum(isinstance(m, wire.Commit) for m in grid.holders(meta)[0].server.seen)
    assert commits < len(datas)  # writes that waited together were committed together
    w = await c.writer("r")
    assert w.committed == w.version and not w.inflight


async def test_pwritev_applies_in_order_and_commits_once(grid: Grid) -> None:
    c = await grid.client()
    meta = await region(c, "r", "ec:4+2", stripes=2)
    model = bytearray(await c.pread("r", 0, 2 * SD))
    writes = [(off, os.urandom(n)) for off, n in ((0, 4096), (SD - 10, 20), (100, 50), (0, 10))]
    for n in grid.holders(meta):
        n.server.seen.clear()
    assert await c.pwritev("r", writes) == sum(len(d) for _, d in writes)
    for off, d in writes:
        model[off : off + len(d)] = d  # later entries win where they overlap
    assert await c.pread("r", 0, 2 * SD) == model
    assert sum(isinstance(m, wire.Commit) for m in grid.holders(meta)[0].server.seen) == 1
    # One of them past the end: the region grows, and the rest still land.
    tail = [(2 * SD + 5, b"grown"), (7, b"seven")]
    await c.pwritev("r", tail)
    model[7:12] = b"seven"
    model += bytes(5) + b"grown"
    assert await c.pread("r", 0, 3 * SD) == model
    with pytest.raises(EcmemError):
        await c.pwritev("r", [(-1, b"x")])


async def test_a_build_with_stale_slice_parity_is_caught_by_a_degraded_read(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check the page-writes chaos scenario relies on: with parity left as it was,
    healthy reads still look right and only a read around a data node shows it."""
    from ecmem import writepath

    monkeypatch.setattr(writepath, "UNSAFE_STALE_PARITY", True)
    c = await grid.client()
    meta = await region(c, "r", "ec:4+2", stripes=1)
    model = bytearray(await c.pread("r", 0, SD))
    data = os.urandom(4096)
    await c.pwrite("r", 8192, data)
    model[8192 : 8192 + 4096] = data
    assert await c.pread("r", 8192, 4096) == data  # healthy: from the data fragment
    grid.holders(meta)[0].set(BROKEN, wire.Get)
    assert await c.pread("r", 8192, 4096) != data  # decoded with stale parity: wrong
