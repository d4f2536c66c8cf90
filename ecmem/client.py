"""The blocking client: ``cl = ecmem.connect()``.

It drives the asyncio client on a private event loop in the calling thread
(no hand-off to another thread on each call, which would cost more than a
small read); a lock makes it safe to share between threads.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

from . import aio
from .errors import ClosedError
from .memtune import tune_malloc
from .regionfile import RegionFile
from .stat import RegionStat

T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    # The standard loop, not uvloop: each blocking call runs the loop once, and uvloop
    # sets up and tears down signal handling on every run (measured: 45 us a call more),
    # while streaming throughput was the same with both.
    return asyncio.new_event_loop()


class Client:
    def __init__(self, loop: asyncio.AbstractEventLoop, inner: aio.AsyncClient) -> None:
        self._loop = loop
        self._inner = inner
        self._lock = threading.RLock()

    def _run(self, coro: Awaitable[T]) -> T:
        with self._lock:
            if self._loop.is_closed():
                if asyncio.iscoroutine(coro):
                    coro.close()
                raise ClosedError("client is closed")
            return self._loop.run_until_complete(coro)

    @property
    def async_client(self) -> aio.AsyncClient:
        return self._inner

    @property
    def cluster(self) -> str:
        return self._inner.cluster

    def create_region(
        self, name: str, size: int | str = 0, policy: str = aio.DEFAULT_POLICY, **kw: Any
    ) -> RegionStat:
        return self._run(self._inner.create_region(name, size, policy, **kw))

    def open(
        self, name: str, mode: str = "rb", *, policy: str | None = None, size: int | str = 0
    ) -> RegionFile:
        inner = self._run(self._inner.open(name, mode, policy=policy, size=size))
        return RegionFile(inner, self._run)

    def pread(self, name: str, offset: int, length: int) -> bytes:
        return self._run(self._inner.pread(name, offset, length))

    def pwrite(self, name: str, offset: int, data: bytes | bytearray | memoryview) -> int:
        return self._run(self._inner.pwrite(name, offset, data))

    def truncate(self, name: str, size: int) -> None:
        self._run(self._inner.truncate(name, size))

    def stat(self, name: str) -> RegionStat:
        return self._run(self._inner.stat(name))

    def exists(self, name: str) -> bool:
        return self._run(self._inner.exists(name))

    def list_regions(self, prefix: str = "") -> list[RegionStat]:
        return self._run(self._inner.list_regions(prefix))

    def delete_region(self, name: str) -> None:
        self._run(self._inner.delete_region(name))

    def close(self) -> None:
        with self._lock:
            if self._loop.is_closed():
                return
            self._loop.run_until_complete(self._inner.close())
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    zk: str | None = None,
    *,
    cluster: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    timeout: float = 10.0,
) -> Client:
    """Connect to a cluster: ``zk`` hosts, else ``ECMEM_ZK``, else the local one in ``./.ecmem``."""
    tune_malloc()
    loop = _new_loop()
    try:
        inner = loop.run_until_complete(
            aio.connect(zk, cluster=cluster, state_dir=state_dir, timeout=timeout)
        )
    except BaseException:
        loop.close()
        raise
    return Client(loop, inner)
