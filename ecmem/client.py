"""The blocking client: ``cl = ecmem.connect()``.

It drives the asyncio client on a private event loop in the calling thread
(no hand-off to another thread on each call, which would cost more than a
small read); a lock makes it safe to share between threads.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from . import aio, fastwrite, pagelog, patience, wire
from .blocking import BlockingPool
from .clientmetrics import ClientMetrics
from .errors import ClosedError, NodeTimeout, NodeUnavailable
from .memtune import tune_malloc
from .meta.model import RegionMeta
from .regionfile import RegionFile
from .stat import RegionStat
from .stripes import Got, Missing, check_reply

T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    # The standard loop, not uvloop: each blocking call runs the loop once, and uvloop
    # sets up and tears down signal handling on every run (measured: 45 us a call more),
    # while streaming throughput was the same with both.
    return asyncio.new_event_loop()


FAST_READ_MAX = 256 * 1024


class Client:
    def __init__(self, loop: asyncio.AbstractEventLoop, inner: aio.AsyncClient) -> None:
        self._loop = loop
        self._inner = inner
        self._lock = threading.RLock()
        self._fast = BlockingPool(inner.address)

    @property
    def metrics(self) -> ClientMetrics:
        """Suspicions, handoffs and degraded reads this client saw (Prometheus counters)."""
        return self._inner.metrics

    def _fast_read(self, name: str, offset: int, length: int, size: int | None) -> bytes | None:
        """A small healthy read within one fragment, over a blocking socket; None when it
        needs the full machinery (unknown region, several fragments, any trouble)."""
        inner = self._inner
        meta = inner.cached_meta(name)
        if meta is None or offset < 0 or length < 0 or length > FAST_READ_MAX:
            return None
        n = max(0, min(length, (meta.size if size is None else size) - offset))
        if n == 0:
            return b""
        view = inner.view(meta)
        pieces = list(view.layout.pieces(offset, n))
        if len(pieces) != 1:
            return None
        p = pieces[0]
        ranges = list(view.layout.data_ranges(p.stripe, p.start, p.length))
        if len(ranges) != 1:
            return None
        index, frag_off, count, _ = ranges[0]
        node_id = view.placement(p.stripe)[index][0]
        if not node_id or inner.pool.is_suspect(node_id):
            return None
        out = bytearray(n)
        into = memoryview(out)
        try:
            conn = self._fast.get(node_id)
            reply = conn.request(wire.Get(view.id, p.stripe, index, frag_off, count), into)
        except NodeTimeout:
            inner.pool.hedged(node_id)
            self._fast.drop(node_id)
            return None
        except NodeUnavailable:
            self._fast.drop(node_id)
            return None
        outcome = check_reply(view, p.stripe, index, frag_off, count, conn.incarnation, reply, into)
        if isinstance(outcome, Got):
            return bytes(out)
        if isinstance(outcome, Missing):
            return bytes(n)
        return None

    def run(self, coro: Awaitable[T]) -> T:
        """Run a coroutine of ``async_client`` on this client's event loop."""
        return self._run(coro)

    def region_meta(self, name: str) -> RegionMeta:
        """The region's record as ZooKeeper holds it (placements, epoch, written stripes)."""
        return self._run(self._inner.region_meta(name))

    def _run(self, coro: Awaitable[T]) -> T:
        with self._lock:
            if self._loop.is_closed():
                if asyncio.iscoroutine(coro):
                    coro.close()
                raise ClosedError("client is closed")
            try:
                return self._loop.run_until_complete(coro)
            finally:
                # A background task's request sent in the loop's last turn must not wait
                # for the next call to leave (framing corks small frames to a turn's end).
                self._inner.pool.flush()

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
        self,
        name: str,
        mode: str = "rb",
        *,
        policy: str | None = None,
        size: int | str = 0,
        timeout: float | None = None,
    ) -> RegionFile:
        inner = self._run(
            self._inner.open_file(name, mode, policy=policy, size=size, timeout=timeout)
        )
        return RegionFile(inner, self._run, self._fast_read)

    def pread(self, name: str, offset: int, length: int) -> bytes:
        with self._lock:
            data = self._fast_read(name, offset, length, None)
        if data is not None:
            return data
        return self._run(self._inner.pread(name, offset, length))

    def pwrite(self, name: str, offset: int, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        with self._lock:
            if self._fast_write(name, [(offset, view)]):
                return view.nbytes
        return self._run(self._inner.pwrite(name, offset, data))

    def pwritev(
        self, name: str, writes: Iterable[tuple[int, bytes | bytearray | memoryview]]
    ) -> int:
        """Write each (offset, bytes) at once; returns when all are committed together."""
        items = [(off, m) for off, d in writes if (m := memoryview(d).cast("B")).nbytes]
        if items:
            with self._lock:
                if self._fast_write(name, items):
                    return sum(d.nbytes for _, d in items)
        return self._run(self._inner.pwritev(name, items))

    def _fast_write(self, name: str, items: list[tuple[int, memoryview]]) -> bool:
        """Page writes over blocking sockets (ecmem/fastwrite.py); False if they must go
        the asyncio way (then nothing was done)."""
        inner = self._inner
        meta = inner.cached_meta(name)
        if meta is None or not inner.holds(name):
            return False
        if any(off < 0 or off + d.nbytes > meta.size for off, d in items):
            return False
        w = inner.writer_of(name)
        view = inner.view(meta)
        off, first = items[0]
        if not meta.paged and pagelog.patchable(view.layout, off, off + first.nbytes):
            # Recorded once, before the region's first patch.
            view = inner.view(self._run(w.ensure_slabs(off, off + first.nbytes)))
        pages = fastwrite.plan(inner.io, w, view, items)
        if pages is None:
            return False
        try:
            if not fastwrite.send(self._fast, w, view, pages):
                self._run(fastwrite.restage(w, meta, pages))
        except BaseException as exc:
            fastwrite.give_up(w, pages, exc)
            raise
        last = pages[-1].stamp
        assert last is not None
        if not fastwrite.commit(self._fast, w, meta, last.version):
            self._run(w.commit(last.version))
        return True

    def release(self, name: str) -> None:
        """Give up the write lease that pwrite or truncate took on a region."""
        self._run(self._inner.release(name))

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
            self._fast.close()
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
    session_timeout: float = 10.0,
    read_patience: float = patience.PATIENCE,
) -> Client:
    """Connect to a cluster: ``zk`` hosts, else ``ECMEM_ZK``, else the local one in ``./.ecmem``."""
    tune_malloc()
    loop = _new_loop()
    try:
        inner = loop.run_until_complete(
            aio.connect(
                zk,
                cluster=cluster,
                state_dir=state_dir,
                timeout=timeout,
                session_timeout=session_timeout,
                read_patience=read_patience,
            )
        )
    except BaseException:
        loop.close()
        raise
    return Client(loop, inner)
