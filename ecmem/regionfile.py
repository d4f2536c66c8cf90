"""Regions as binary file objects, asyncio and blocking.

Writes are gathered in a buffer and stored a stripe batch at a time; the
region's new size and modification time are published to ZooKeeper on
``flush()`` and ``close()``, so another client sees a file's contents once
it is flushed or closed.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .errors import ClosedError, ConfigError, EcmemError


class RegionIO(Protocol):
    """What a region file needs of its client (``AsyncClient`` is one)."""

    async def read_at(
        self, name: str, offset: int, length: int, size: int | None = None
    ) -> bytes: ...

    async def read_into(
        self, name: str, offset: int, out: memoryview, size: int | None = None
    ) -> int: ...

    async def write_at(
        self, name: str, offset: int, data: bytes | bytearray | memoryview, size: int
    ) -> None: ...

    async def publish_size(self, name: str, size: int, *, exact: bool = False) -> Any: ...

    async def commit(self, name: str, upto: int | None = None) -> None: ...

    async def truncate(self, name: str, size: int) -> None: ...

    async def writer_done(self, name: str) -> None: ...


T = TypeVar("T")
WRITE_BUFFER = 16 * 1024 * 1024
WRITE_BEHIND = 64 * 1024 * 1024  # bytes a file may have on their way to the nodes


def _immutable(data: bytes | bytearray | memoryview) -> bool:
    """True if nobody can change ``data`` while a background write still reads it."""
    if isinstance(data, bytes):
        return True
    return isinstance(data, memoryview) and isinstance(data.obj, bytes)


@dataclass(frozen=True)
class Flags:
    read: bool
    write: bool
    create: bool = False
    truncate: bool = False
    append: bool = False
    exclusive: bool = False


_MODES = {
    "r": Flags(True, False),
    "r+": Flags(True, True),
    "w": Flags(False, True, create=True, truncate=True),
    "w+": Flags(True, True, create=True, truncate=True),
    "a": Flags(False, True, create=True, append=True),
    "a+": Flags(True, True, create=True, append=True),
    "x": Flags(False, True, create=True, exclusive=True),
    "x+": Flags(True, True, create=True, exclusive=True),
}


def parse_mode(mode: str) -> Flags:
    if not isinstance(mode, str) or "t" in mode:
        raise ConfigError(f"mode {mode!r}: regions are binary, use e.g. 'rb', 'r+b', 'wb', 'ab'")
    key = mode.replace("b", "")
    if key not in _MODES or mode.count("b") > 1:
        raise ConfigError(
            f"mode {mode!r} is not understood: use rb, r+b, wb, w+b, ab, a+b, xb or x+b"
        )
    return _MODES[key]


class Position(int):
    """A file position from ``AsyncRegionFile.seek``/``tell``: a plain int, which may also
    be awaited, so ``f.seek(0)`` and ``await f.seek(0)`` both work (they do no I/O)."""

    def __await__(self) -> Generator[Any, None, int]:
        return _ready(int(self)).__await__()


async def _ready(value: int) -> int:
    return value


class AsyncRegionFile:
    """A file object over a region. Get one from ``AsyncClient.open``.

    Writes are buffered and stored behind the caller's back, up to
    WRITE_BEHIND bytes in flight; ``flush()`` and ``close()`` wait for all of
    them and publish the size. A write that failed in the background raises
    its error at the next ``write``, ``flush`` or ``close`` (and keeps raising
    it: what was written since the last successful flush may be incomplete).
    """

    def __init__(self, client: RegionIO, name: str, flags: Flags, size: int, stripe: int) -> None:
        self._client = client
        self.name = name
        self.flags = flags
        self._stripe = stripe
        self._size = size  # our view: published size plus our unflushed growth
        self._published = size
        self._stored = size  # end of what is on, or on its way to, the nodes
        self._pos = 0
        self._buf = bytearray()
        self._buf_off = 0
        self._dirty = False
        self._inflight: dict[asyncio.Future[None], tuple[int, int, int]] = {}
        self._inflight_bytes = 0
        self._error: BaseException | None = None
        self.closed = False

    @property
    def mode(self) -> str:
        for key, flags in _MODES.items():
            if flags == self.flags:
                return key.replace("+", "+b") if "+" in key else key + "b"
        return "rb"

    def _check(self, write: bool = False, read: bool = False) -> None:
        if self.closed:
            raise ClosedError(f"region file {self.name!r} is closed")
        if write and not self.flags.write:
            raise io.UnsupportedOperation(f"region file {self.name!r} is not open for writing")
        if read and not self.flags.read:
            raise io.UnsupportedOperation(f"region file {self.name!r} is not open for reading")

    def readable(self) -> bool:
        return self.flags.read

    def writable(self) -> bool:
        return self.flags.write

    def seekable(self) -> bool:
        return True

    def tell(self) -> Position:
        """The position; no I/O, so ``f.tell()`` (``await f.tell()`` works too)."""
        self._check()
        return Position(self._pos)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> Position:
        """Move the position; no I/O, so ``f.seek(0)`` (``await f.seek(0)`` works too)."""
        self._check()
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._size + offset
        else:
            raise ConfigError(f"whence {whence} is not SEEK_SET, SEEK_CUR or SEEK_END")
        if pos < 0:
            raise ConfigError(f"cannot seek to negative position {pos}")
        self._pos = pos
        return Position(pos)

    @property
    def size(self) -> int:
        return self._size

    def quiescent(self) -> bool:
        """Open for reading only: what the nodes hold committed is all there is to read."""
        return self.flags.read and not self.flags.write and not self.closed

    async def read(self, n: int = -1) -> bytes:
        self._check(read=True)
        await self._catch_up()
        if n is None or n < 0:
            n = max(0, self._size - self._pos)
        data = await self._client.read_at(self.name, self._pos, n, self._size)
        self._pos += len(data)
        return data

    async def readinto(self, b: Any) -> int:
        """Read into ``b`` directly from the nodes, without an intermediate copy."""
        self._check(read=True)
        await self._catch_up()
        view = memoryview(b).cast("B")
        n = await self._client.read_into(self.name, self._pos, view, self._size)
        self._pos += n
        return n

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        self._check(write=True)
        self._raise_background_error()
        if self.flags.append:
            self._pos = self._size
        n = memoryview(data).nbytes
        if n == 0:
            return 0
        if self._buf and self._pos != self._buf_off + len(self._buf):
            await self._issue(whole_stripes=False)
        if not self._buf:
            self._buf_off = self._pos
        view = memoryview(data).cast("B")
        direct = 0
        if not self._buf and self._pos % self._stripe == 0 and _immutable(data):
            # Whole stripes of bytes nobody can change go out as they are, uncopied.
            direct = n // self._stripe * self._stripe
            if direct:
                await self._submit(self._pos, view[:direct])
                self._buf_off = self._pos + direct
        if direct < n:
            self._buf += view[direct:]
            if len(self._buf) >= WRITE_BUFFER:
                await self._issue(whole_stripes=True)
        self._pos += n
        self._size = max(self._size, self._pos)
        self._dirty = True
        return n

    async def _issue(self, whole_stripes: bool) -> None:
        """Send the buffer on its way; with ``whole_stripes``, keep a partial last stripe
        back so that the next writes complete it (no read-modify-write)."""
        if not self._buf:
            return
        start, end = self._buf_off, self._buf_off + len(self._buf)
        cut = end // self._stripe * self._stripe if whole_stripes else end
        if cut <= start:
            return
        chunk, self._buf = self._buf, self._buf[cut - start :]
        self._buf_off = cut
        await self._submit(start, memoryview(chunk)[: cut - start])

    async def _submit(self, offset: int, data: memoryview) -> None:
        n = data.nbytes
        sd = self._stripe
        # Writes that share a stripe must not run at once: each rewrites the whole stripe.
        # An extending write also rewrites the stripe holding the old end.
        first = min(offset, self._stored) // sd if offset + n > self._stored else offset // sd
        last = (offset + n - 1) // sd
        clash = [t for t, (a, b, _) in self._inflight.items() if a <= last and first <= b]
        if clash:
            await asyncio.wait(clash)
        while self._inflight and self._inflight_bytes + n > WRITE_BEHIND:
            await asyncio.wait(list(self._inflight), return_when=asyncio.FIRST_COMPLETED)
        self._raise_background_error()
        task = asyncio.ensure_future(self._client.write_at(self.name, offset, data, self._stored))
        self._inflight[task] = (first, last, n)
        self._inflight_bytes += n
        self._stored = max(self._stored, offset + n)
        task.add_done_callback(self._landed)

    def _landed(self, task: asyncio.Future[None]) -> None:
        _, _, n = self._inflight.pop(task)
        self._inflight_bytes -= n
        if task.cancelled():
            exc: BaseException | None = asyncio.CancelledError()
        else:
            exc = task.exception()
        if exc is not None and self._error is None:
            if isinstance(exc, EcmemError):
                # The bytes that store held left the buffer: no retry of a flush can
                # store them, so the error stays, and must not invite one.
                exc.retriable = False
                exc.add_note(
                    f"region {self.name!r}: this file's buffered writes were not all stored; "
                    "reopen the region and write them again"
                )
            self._error = exc

    def _raise_background_error(self) -> None:
        if self._error is not None:
            raise self._error

    async def _settle(self) -> None:
        """Issue everything buffered and wait until it is staged on the nodes."""
        await self._issue(whole_stripes=False)
        if self._inflight:
            await asyncio.wait(list(self._inflight))
        self._raise_background_error()

    async def _catch_up(self) -> None:
        """Before a read: our own writes staged and committed, so that we read them."""
        if self.flags.write and (self._buf or self._inflight or self._dirty):
            await self._settle()
            await self._client.commit(self.name)

    async def flush(self) -> None:
        """Store buffered writes and publish the size; returns when the data is on all nodes."""
        if self.closed:
            return
        await self._settle()
        if self._dirty:
            meta = await self._client.publish_size(self.name, self._size)
            self._published = self._size = max(self._size, meta.size)
            self._stored = max(self._stored, self._size)
            self._dirty = False
        if self.flags.write:
            await self._client.commit(self.name)

    async def truncate(self, size: int | None = None) -> int:
        self._check(write=True)
        await self.flush()
        size = self._pos if size is None else size
        await self._client.truncate(self.name, size)
        self._size = self._published = self._stored = size
        return size

    async def close(self) -> None:
        if self.closed:
            return
        try:
            await self.flush()
        finally:
            for task in list(self._inflight):
                task.cancel()
            self.closed = True
            if self.flags.write:
                await self._client.writer_done(self.name)

    async def __aenter__(self) -> AsyncRegionFile:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class RegionFile(io.RawIOBase):
    """Blocking twin of AsyncRegionFile; works with shutil, numpy and friends."""

    def __init__(
        self,
        inner: AsyncRegionFile,
        run: Callable[[Awaitable[Any]], Any],
        fast_read: Callable[[str, int, int, int | None], bytes | None] | None = None,
    ) -> None:
        super().__init__()
        self._inner = inner
        self._run = run
        self._fast_read = fast_read
        self.name = inner.name

    @property
    def mode(self) -> str:
        return self._inner.mode

    @property
    def size(self) -> int:
        return self._inner.size

    def readable(self) -> bool:
        return self._inner.readable()

    def writable(self) -> bool:
        return self._inner.writable()

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return int(self._inner.tell())

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return int(self._inner.seek(offset, whence))

    def read(self, n: int | None = -1) -> bytes:
        inner = self._inner
        if self._fast_read is not None and n is not None and n >= 0 and inner.quiescent():
            data = self._fast_read(inner.name, inner.tell(), n, inner.size)
            if data is not None:
                inner.seek(len(data), os.SEEK_CUR)
                return data
        result: bytes = self._run(inner.read(-1 if n is None else n))
        return result

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, b: Any) -> int:
        result: int = self._run(self._inner.readinto(b))
        return result

    def write(self, b: Any) -> int:
        result: int = self._run(self._inner.write(b))
        return result

    def flush(self) -> None:
        if not self._inner.closed:
            self._run(self._inner.flush())

    def truncate(self, size: int | None = None) -> int:
        result: int = self._run(self._inner.truncate(size))
        return result

    def close(self) -> None:
        if not self.closed:
            try:
                self._run(self._inner.close())
            finally:
                super().close()

    def fileno(self) -> int:
        raise io.UnsupportedOperation("regions have no file descriptor; use ecmem mount for one")


class Opening:
    """What :meth:`AsyncClient.open` returns: awaitable (``f = await cl.open(...)``) and an
    async context manager (``async with cl.open(...) as f:``, closing ``f`` at the end), as
    ``aiofiles.open`` is. Use it one way, once."""

    def __init__(self, opening: Coroutine[Any, Any, AsyncRegionFile]) -> None:
        self._opening = opening
        self._file: AsyncRegionFile | None = None

    def __await__(self) -> Generator[Any, None, AsyncRegionFile]:
        return self._opening.__await__()

    async def __aenter__(self) -> AsyncRegionFile:
        self._file = await self._opening
        return self._file

    async def __aexit__(self, *exc: object) -> None:
        if self._file is not None:
            await self._file.close()
