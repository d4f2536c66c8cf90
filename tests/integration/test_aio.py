"""The asyncio client against a real cluster."""

from __future__ import annotations

import asyncio
import os

import pytest

import ecmem
import ecmem.aio
from tests.harness import TestCluster

pytestmark = pytest.mark.integration


async def test_async_api(cluster: TestCluster) -> None:
    async with await ecmem.aio.connect(cluster.zk, cluster=cluster.name) as cl:
        st = await cl.create_region("aio/a", 0, "ec:2+1")
        assert st.policy == "ec:2+1"
        data = os.urandom(3 * 1024 * 1024 + 5)
        assert await cl.pwrite("aio/a", 7, data) == len(data)
        assert await cl.pread("aio/a", 7, len(data)) == data
        assert (await cl.stat("aio/a")).size == len(data) + 7
        async with await cl.open("aio/b", "wb", policy="rep:3") as f:
            await f.write(b"hello ")
            await f.write(b"world")
        async with await cl.open("aio/b", "rb") as f:
            assert await f.read() == b"hello world"
        # concurrent readers on one client
        parts = await asyncio.gather(*(cl.pread("aio/a", 7 + i * 1000, 1000) for i in range(50)))
        assert b"".join(parts) == data[:50_000]
        assert [s.name for s in await cl.list_regions("aio/")] == ["aio/a", "aio/b"]
        await cl.delete_region("aio/a")
        await cl.delete_region("aio/b")
        with pytest.raises(ecmem.RegionNotFound):
            await cl.stat("aio/a")


async def test_async_open_is_awaitable_and_a_context_manager(cluster: TestCluster) -> None:
    """README: the asyncio twin has the same methods, awaited; open() both ways."""
    async with await ecmem.aio.connect(cluster.zk, cluster=cluster.name) as cl:
        async with cl.open("aio/ctx", "wb", policy="rep:3") as f:
            await f.write(b"0123456789")
            assert f.tell() == 10 and await f.tell() == 10
            assert await f.seek(2) == 2 and f.seek(3) == 3
        assert f.closed, "async with cl.open(...) closes the file"
        f = await cl.open("aio/ctx", "r+b")
        try:
            assert await f.read(4) == b"0123"
            f.seek(-2, os.SEEK_END)
            assert await f.read() == b"89"
            await f.seek(0)
            await f.write(b"ab")
        finally:
            await f.close()
        async with cl.open("aio/ctx") as f:
            assert await f.read() == b"ab23456789"
        with pytest.raises(ecmem.RegionNotFound):
            async with cl.open("aio/missing"):
                pass
        await cl.delete_region("aio/ctx")
