"""Dirty stripes of one open file, gathered in memory and written back whole.

Small writes at scattered offsets would each cost a read-modify-write of a
whole stripe on the nodes. The mount keeps such writes here instead, in whole
stripes (read once from the file the first time a stripe is touched), and
writes the stripes back whole on fsync, on close, or when the cache passes its
limit. Like a page cache: unsynced writes are lost if the mount dies, and
fsync is the promise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Load = Callable[[int, int], Awaitable[bytes]]  # (offset, length) -> bytes (short at the end)
Store = Callable[[int, memoryview], Awaitable[None]]  # (offset, bytes) -> stored


class StripeCache:
    def __init__(self, stripe: int, limit: int, load: Load, store: Store) -> None:
        self.stripe = stripe
        self.limit = max(limit, stripe)
        self.load = load
        self.store = store
        self.stripes: dict[int, bytearray] = {}
        self.end = 0  # the file's end as far as cached writes go

    @property
    def cached_bytes(self) -> int:
        return len(self.stripes) * self.stripe

    def touches(self, offset: int, length: int) -> bool:
        if not self.stripes or length <= 0:
            return False
        first, last = offset // self.stripe, (offset + length - 1) // self.stripe
        if last - first < len(self.stripes):
            return any(s in self.stripes for s in range(first, last + 1))
        return any(first <= s <= last for s in self.stripes)

    async def write(self, offset: int, data: bytes | memoryview, size: int) -> None:
        """Take a write; ``size`` is the file's size without this cache's writes."""
        view = memoryview(data).cast("B")
        n = view.nbytes
        sd = self.stripe
        pos = offset
        while pos < offset + n:
            s = pos // sd
            start = s * sd
            a = pos - start
            b = min(sd, offset + n - start)
            buf = self.stripes.get(s)
            if buf is None:
                if a == 0 and b == sd:
                    buf = bytearray(sd)
                else:
                    old = await self.load(start, sd) if start < size else b""
                    buf = bytearray(old[:sd]) + bytearray(sd - min(len(old), sd))
                self.stripes[s] = buf
            buf[a:b] = view[pos - offset : pos - offset + (b - a)]
            pos = start + b
        self.end = max(self.end, offset + n)
        if self.cached_bytes > self.limit:
            await self.flush(size)

    def overlay(self, offset: int, out: bytearray) -> None:
        """Lay cached bytes over ``out``, which holds the file's bytes from ``offset``."""
        sd = self.stripe
        for s, buf in self.stripes.items():
            lo, hi = max(offset, s * sd), min(offset + len(out), (s + 1) * sd)
            if lo < hi:
                out[lo - offset : hi - offset] = buf[lo - s * sd : hi - s * sd]

    def size(self, size: int) -> int:
        """The file's size with this cache's writes."""
        return max(size, self.end)

    def truncated(self, size: int) -> None:
        """The file was cut to ``size`` (after a flush): nothing cached lies past it."""
        self.stripes.clear()
        self.end = min(self.end, size)

    async def flush(self, size: int) -> None:
        """Store every cached stripe whole (up to the file's end), in order."""
        end = self.size(size)
        sd = self.stripe
        for s in sorted(self.stripes):
            length = min(sd, end - s * sd)
            if length > 0:
                await self.store(s * sd, memoryview(self.stripes[s])[:length])
            del self.stripes[s]  # only once stored: a failed flush keeps the rest
        self.end = 0
