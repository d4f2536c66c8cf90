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
