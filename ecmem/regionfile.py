"""Regions as binary file objects, asyncio and blocking.

Writes are gathered in a buffer and stored a stripe batch at a time; the
region's new size and modification time are published to ZooKeeper on
``flush()`` and ``close()``, so another client sees a file's contents once
it is flushed or closed.
"""

from __future__ import annotations

import io
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ClosedError, ConfigError

if TYPE_CHECKING:
    from .aio import AsyncClient

T = TypeVar("T")
WRITE_BUFFER = 8 * 1024 * 1024


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


class AsyncRegionFile:
    """A file object over a region. Get one from ``AsyncClient.open``."""

    def __init__(self, client: AsyncClient, name: str, flags: Flags, size: int) -> None:
        self._client = client
        self.name = name
        self.flags = flags
        self._size = size  # our view: published size plus our unflushed growth
        self._published = size
        self._stored = size  # end of what is on the nodes (published or not)
        self._pos = 0
        self._buf = bytearray()
        self._buf_off = 0
        self._dirty = False
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

    def tell(self) -> int:
        self._check()
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
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
        return pos

    @property
    def size(self) -> int:
        return self._size

    async def read(self, n: int = -1) -> bytes:
        self._check(read=True)
        await self._write_buffer()
        if n is None or n < 0:
            n = max(0, self._size - self._pos)
        data = await self._client.read_at(self.name, self._pos, n, self._size)
        self._pos += len(data)
        return data

    async def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        data = await self.read(len(view))
        view[: len(data)] = data
        return len(data)

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        self._check(write=True)
        if self.flags.append:
            self._pos = self._size
        n = memoryview(data).nbytes
        if n == 0:
            return 0
        if self._buf and self._pos != self._buf_off + len(self._buf):
            await self._write_buffer()
        if not self._buf:
            self._buf_off = self._pos
        if not self._buf and n >= WRITE_BUFFER:
            await self._client.write_at(self.name, self._pos, data, self._stored)
            self._stored = max(self._stored, self._pos + n)
        else:
            self._buf += memoryview(data).cast("B")
            if len(self._buf) >= WRITE_BUFFER:
                await self._write_buffer()
        self._pos += n
        self._size = max(self._size, self._pos)
        self._dirty = True
        return n

    async def _write_buffer(self) -> None:
        if not self._buf:
            return
        buf, self._buf = self._buf, bytearray()
        await self._client.write_at(self.name, self._buf_off, buf, self._stored)
        self._stored = max(self._stored, self._buf_off + len(buf))

    async def flush(self) -> None:
        """Store buffered writes and publish the size; returns when the data is on all nodes."""
        if self.closed:
            return
        await self._write_buffer()
        if self._dirty:
            meta = await self._client.publish_size(self.name, self._size)
            self._published = self._size = max(self._size, meta.size)
            self._stored = max(self._stored, self._size)
            self._dirty = False

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
            self.closed = True

    async def __aenter__(self) -> AsyncRegionFile:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class RegionFile(io.RawIOBase):
    """Blocking twin of AsyncRegionFile; works with shutil, numpy and friends."""

    def __init__(self, inner: AsyncRegionFile, run: Callable[[Awaitable[Any]], Any]) -> None:
        super().__init__()
        self._inner = inner
        self._run = run
        self.name = inner.name  # type: ignore[misc]

    @property
    def mode(self) -> str:  # type: ignore[override]
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
        return self._inner.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def read(self, n: int | None = -1) -> bytes:
        result: bytes = self._run(self._inner.read(-1 if n is None else n))
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
