"""Page writes from the blocking client against real node processes: they go as page
patches over blocking sockets when the writer is idle, read back healthy and with
nodes down, and fall back to the asyncio path (same version) when a node is out."""

from __future__ import annotations

import os
import random

import pytest

import ecmem
from ecmem import pagelog
from tests.harness import TestCluster

pytestmark = pytest.mark.integration

CHUNK = 65536  # 256 KiB stripes of ec:4+2
SD = 4 * CHUNK


def asyncio_calls(inner: object, method: str) -> list[tuple[object, ...]]:
    """Record each call of the asyncio client's ``method`` (the blocking way makes none)."""
    calls: list[tuple[object, ...]] = []
    real = getattr(inner, method)

    async def counted(*a, **kw):  # type: ignore[no-untyped-def]
        calls.append(a)
        return await real(*a, **kw)

    setattr(inner, method, counted)
    return calls


def test_page_writes_take_the_blocking_path_and_read_back(cluster: TestCluster) -> None:
    with cluster.client() as cl:
        cl.create_region("pw/fast", 0, "ec:4+2", chunk=CHUNK)
        model = bytearray(os.urandom(2 * SD))
        cl.pwrite("pw/fast", 0, model)
        inner = cl.async_client
        calls = asyncio_calls(inner, "pwrite")
        rng = random.Random(7)
        for _ in range(pagelog.FOLD.after // 2):
            off = rng.randrange(2 * SD // 4096) * 4096
            page = os.urandom(4096)
            cl.pwrite("pw/fast", off, page)
            model[off : off + 4096] = page
        assert calls == []  # every one went the blocking way
        w = inner.writer_of("pw/fast")
        assert w.patched.stripes and w.committed >= w.version and not w.inflight
        with cluster.client() as reader:
            assert reader.pread("pw/fast", 0, 2 * SD) == model


def test_pwritev_of_many_pages_goes_in_rounds_of_one_page_a_stripe(cluster: TestCluster) -> None:
    with cluster.client() as cl:
        cl.create_region("pw/vec", 0, "ec:4+2", chunk=CHUNK)
        model = bytearray(os.urandom(4 * SD))
        cl.pwrite("pw/vec", 0, model)
        inner = cl.async_client
        calls = asyncio_calls(inner, "pwritev")
        rng = random.Random(11)
        for _ in range(3):
            # Pages of 4 stripes, some of the same bytes (the later one wins).
            batch = [(rng.randrange(4 * SD // 2048) * 2048, os.urandom(2048)) for _ in range(24)]
            batch += [(batch[0][0], os.urandom(2048))]
            assert cl.pwritev("pw/vec", batch) == 25 * 2048
            for off, page in batch:
                model[off : off + len(page)] = page
        assert calls == []  # every batch went the blocking way
        w = inner.writer_of("pw/vec")
        assert w.committed >= w.version and not w.inflight
        with cluster.client() as reader:
            assert reader.pread("pw/vec", 0, 4 * SD) == model


def test_an_interrupted_blocking_page_write_leaves_no_write_in_flight(
    cluster: TestCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecmem import fastwrite

    with cluster.client() as cl:
        cl.create_region("pw/intr", 0, "ec:4+2", chunk=CHUNK)
        model = bytearray(os.urandom(SD))
        cl.pwrite("pw/intr", 0, model)

        def interrupted(*a: object) -> bool:
            raise KeyboardInterrupt

        monkeypatch.setattr(fastwrite, "_round", interrupted)
        with pytest.raises(KeyboardInterrupt):
            cl.pwritev("pw/intr", [(0, b"x" * 4096), (8192, b"y" * 4096)])
        w = cl.async_client.writer_of("pw/intr")
        assert not w.inflight  # nothing left for a commit to wait on forever
        monkeypatch.undo()
        with pytest.raises(ecmem.EcmemError, match="interrupted"):
            cl.pwrite("pw/intr", 0, b"z" * 4096)  # the writer stopped, saying why
        cl.release("pw/intr")
        cl.pwrite("pw/intr", 0, b"z" * 4096)  # a new writer recovers and goes on
        model[:4096] = b"z" * 4096
        assert cl.pread("pw/intr", 0, SD) == model


def test_page_writes_with_a_node_down_go_around_it_and_survive_m_losses(
    fresh_cluster: TestCluster,
) -> None:
    c = fresh_cluster
    with c.client() as cl:
        cl.create_region("pw/down", 0, "ec:4+2", chunk=CHUNK)
        model = bytearray(os.urandom(SD))
        cl.pwrite("pw/down", 0, model)
        holders = [n for n, _ in cl.region_meta("pw/down").slabs[0]]
        for i in range(8):
            off = (i * 3 % 64) * 4096
            page = os.urandom(4096)
            cl.pwrite("pw/down", off, page)
            model[off : off + 4096] = page
        c.kill(holders[0])  # a data fragment's node: the next writes go whole, handed off
        for i in range(8):
            off = (i * 5 % 64) * 4096
            page = os.urandom(4096)
            cl.pwrite("pw/down", off, page)
            model[off : off + 4096] = page
        assert cl.pread("pw/down", 0, SD) == model
    c.kill(holders[1])  # M = 2 lost: every acknowledged page still reads back
    with c.client() as reader:
        assert reader.pread("pw/down", 0, SD) == model
