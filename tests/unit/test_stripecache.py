"""The mount's stripe cache against a plain bytearray model of the file."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from ecmem.mount.stripecache import SMALL, StripeCache

STRIPE = 64


class Backing:
    """A file: bytes past its size read as absent; every store is whole-stripe or tail."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.stores: list[tuple[int, int]] = []

    async def load(self, offset: int, length: int) -> bytes:
        return bytes(self.data[offset : offset + length])

    async def store(self, offset: int, data: memoryview) -> None:
        self.stores.append((offset, data.nbytes))
        end = offset + data.nbytes
        if end > len(self.data):
            self.data += bytes(end - len(self.data))
        self.data[offset:end] = data


ops = st.lists(
    st.one_of(
        st.tuples(st.just("w"), st.integers(0, 1000), st.binary(min_size=1, max_size=200)),
        st.tuples(st.just("r"), st.integers(0, 1100), st.integers(0, 300)),
        st.tuples(st.just("f"), st.just(0), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=600, deadline=None)
@given(ops, st.integers(1, 6))
def test_cache_behaves_like_the_file(script: list[tuple[str, int, object]], stripes: int) -> None:
    async def run() -> None:
        file = Backing()
        cache = StripeCache(STRIPE, stripes * STRIPE, file.load, file.store)
        model = bytearray()
        for op, off, arg in script:
            if op == "w":
                assert isinstance(arg, bytes)
                await cache.write(off, arg, len(file.data))
                end = off + len(arg)
                if end > len(model):
                    model += bytes(end - len(model))
                model[off:end] = arg
                assert cache.cached_bytes <= max(stripes * STRIPE, STRIPE)
                assert cache.cached_bytes == sum(e.nbytes for e in cache.stripes.values())
            elif op == "r":
                assert isinstance(arg, int)
                size = cache.size(len(file.data))
                assert size == len(model)
                n = max(0, min(arg, size - off))
                out = bytearray(file.data[off : off + n])
                out += bytes(n - len(out))
                cache.overlay(off, out)
                assert bytes(out) == bytes(model[off : off + n])
            else:
                await cache.flush(len(file.data))
                assert file.data == model and not cache.stripes
        await cache.flush(len(file.data))
        assert file.data == model
        for offset, length in file.stores:
            # Whole stripes (short only at the file's end), or a few bytes overwritten
            # inside the file, each range on its own (page patches on the nodes).
            whole = offset % STRIPE == 0 and 0 < length <= STRIPE
            assert whole or 0 < length <= STRIPE // SMALL, (offset, length)

    asyncio.run(run())


def test_scattered_writes_read_each_stripe_once_at_flush() -> None:
    """No read per write: a stripe is loaded once, when it is written back."""

    async def run() -> None:
        file = Backing()
        file.data = bytearray(b"o" * STRIPE * 4)
        loads: list[int] = []

        async def load(offset: int, length: int) -> bytes:
            loads.append(offset)
            return await file.load(offset, length)

        cache = StripeCache(STRIPE, 1 << 20, load, file.store)
        for i in range(40):
            await cache.write((i * 37) % (STRIPE * 4 - 4), b"wxyz", len(file.data))
        assert loads == []
        await cache.write(STRIPE * 2, b"W" * STRIPE, len(file.data))  # covers a stripe
        await cache.flush(len(file.data))
        assert sorted(loads) == [0, STRIPE, STRIPE * 3]  # stripe 2 was written whole

    asyncio.run(run())


def test_a_few_pages_overwritten_go_range_by_range_unread() -> None:
    async def run() -> None:
        file = Backing()
        file.data = bytearray(b"o" * STRIPE * 2)
        loads: list[int] = []

        async def load(offset: int, length: int) -> bytes:
            loads.append(offset)
            return await file.load(offset, length)

        cache = StripeCache(STRIPE, 1 << 20, load, file.store)
        await cache.write(3, b"ab", len(file.data))
        await cache.write(40, b"cd", len(file.data))
        await cache.write(STRIPE + 60, b"efgh", len(file.data))  # its stripe: inside the file
        await cache.flush(len(file.data))
        assert loads == [] and sorted(file.stores) == [(3, 2), (40, 2), (STRIPE + 60, 4)]
        assert file.data[3:5] == b"ab" and file.data[STRIPE + 60 :] == b"efgh"

    asyncio.run(run())
