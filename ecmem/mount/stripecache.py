"""Scattered writes of one open file, gathered in memory and written back by stripe.

Small writes at scattered offsets would each cost a read-modify-write of a whole
stripe on the nodes. The mount keeps such writes here instead, as the byte
ranges written within each stripe, and writes each touched stripe back once, on
fsync, on close, or when the cache holds ``limit`` bytes: a stripe the writes
cover wholly goes out as it is; one with a few pages overwritten goes range by
range (page patches on the nodes); any other is read once and merged. Like a page
cache: unsynced writes are lost if the mount dies, and fsync is the promise.
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable

# A stripe whose cached writes are at most 1/SMALL of it, all inside the file, is stored
# range by range (page patches) instead of read and written whole.
SMALL = 8
Load = Callable[[int, int], Awaitable[bytes]]  # (offset, length) -> bytes (short at the end)
Store = Callable[[int, memoryview], Awaitable[None]]  # (offset, bytes) -> stored


class _Extents:
    """Disjoint, sorted byte ranges written within one stripe, each with its bytes."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.data: list[bytearray] = []

    @property
    def nbytes(self) -> int:
        return sum(len(d) for d in self.data)

    def put(self, at: int, b: memoryview) -> None:
        end = at + b.nbytes
        # Extents that overlap or touch [at, end) merge with it into one.
        i = bisect.bisect_left(self.starts, at)
        if i > 0 and self.starts[i - 1] + len(self.data[i - 1]) >= at:
            i -= 1
        j = i
        while j < len(self.starts) and self.starts[j] <= end:
            j += 1
        if i == j:
            self.starts.insert(i, at)
            self.data.insert(i, bytearray(b))
            return
        lo = min(at, self.starts[i])
        hi = max(end, self.starts[j - 1] + len(self.data[j - 1]))
        merged = bytearray(hi - lo)
        for s, d in zip(self.starts[i:j], self.data[i:j], strict=True):
            merged[s - lo : s - lo + len(d)] = d
        merged[at - lo : end - lo] = b
        self.starts[i:j] = [lo]
        self.data[i:j] = [merged]

    def covers(self, length: int) -> bool:
        return len(self.starts) == 1 and self.starts[0] == 0 and len(self.data[0]) >= length

    def lay_over(self, out: bytearray | memoryview, out_at: int) -> None:
        """Copy the extents into ``out``, which holds the stripe's bytes from ``out_at``."""
        n = len(out)
        for s, d in zip(self.starts, self.data, strict=True):
            lo, hi = max(s, out_at), min(s + len(d), out_at + n)
            if lo < hi:
                out[lo - out_at : hi - out_at] = d[lo - s : hi - s]


class StripeCache:
    def __init__(self, stripe: int, limit: int, load: Load, store: Store) -> None:
        self.stripe = stripe
        self.limit = max(limit, stripe)
        self.load = load
        self.store = store
        self.stripes: dict[int, _Extents] = {}
        self.cached_bytes = 0
        self.end = 0  # the file's end as far as cached writes go

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
            a = pos - s * sd
            b = min(sd, offset + n - s * sd)
            ext = self.stripes.get(s)
            if ext is None:
                ext = self.stripes[s] = _Extents()
            before = ext.nbytes
            ext.put(a, view[pos - offset : pos - offset + (b - a)])
            self.cached_bytes += ext.nbytes - before
            pos = s * sd + b
        self.end = max(self.end, offset + n)
        if self.cached_bytes > self.limit:
            await self.flush(size)

    def overlay(self, offset: int, out: bytearray) -> None:
        """Lay cached bytes over ``out``, which holds the file's bytes from ``offset``."""
        sd = self.stripe
        view = memoryview(out)
        for s, ext in self.stripes.items():
            lo, hi = max(offset, s * sd), min(offset + len(out), (s + 1) * sd)
            if lo < hi:
                ext.lay_over(view[lo - offset : hi - offset], lo - s * sd)

    def size(self, size: int) -> int:
        """The file's size with this cache's writes."""
        return max(size, self.end)

    def truncated(self, size: int) -> None:
        """The file was cut to ``size`` (after a flush): nothing cached lies past it."""
        self.stripes.clear()
        self.cached_bytes = 0
        self.end = min(self.end, size)

    async def flush(self, size: int) -> None:
        """Store every touched stripe (up to the file's end), each once, in order."""
        end = self.size(size)
        sd = self.stripe
        for s in sorted(self.stripes):
            ext = self.stripes[s]
            length = min(sd, end - s * sd)
            inside = s * sd + ext.starts[-1] + len(ext.data[-1]) <= size if ext.starts else False
            if length > 0 and inside and ext.nbytes <= sd // SMALL:
                # A few pages overwritten: each range goes as it is (a page patch on the
                # nodes), nothing read.
                for at, data in zip(ext.starts, ext.data, strict=True):
                    await self.store(s * sd + at, memoryview(data))
            elif length > 0:
                if ext.covers(length):
                    buf = ext.data[0]
                else:  # read once what the writes did not cover, then lay them over it
                    old = await self.load(s * sd, length) if s * sd < size else b""
                    buf = bytearray(old[:length]) + bytearray(length - min(len(old), length))
                    ext.lay_over(buf, 0)
                await self.store(s * sd, memoryview(buf)[:length])
            self.cached_bytes -= ext.nbytes
            del self.stripes[s]  # only once stored: a failed flush keeps the rest
        self.end = 0
