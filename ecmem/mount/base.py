"""The mount's shared state (open files, handles, inodes) and the helpers that turn
paths into regions and attributes. fs.py has the file operations, namespace.py the
changes to names."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Any

import pyfuse3

from ecmem.aio import AsyncClient
from ecmem.errors import RegionNotFound
from ecmem.layout import Layout
from ecmem.meta.model import DirMeta, RegionMeta
from ecmem.policy import parse_policy
from ecmem.regionfile import AsyncRegionFile

from .stripecache import StripeCache
from .tree import Inodes, children, join, mount_path, parent_of, region_name

log = logging.getLogger("ecmem.mount")

CACHE = 1.0  # seconds the kernel may trust names and attributes
STRIPE_CACHE = 128 * 1024 * 1024  # bytes of scattered writes an open file gathers
BLOCK = 4096  # statfs block size


@dataclass
class OpenFile:
    """A file some descriptors of this mount hold open (one per inode)."""

    ino: int
    id: str  # the region's id: stable across renames
    name: str  # region name now (renames follow it)
    readers: int = 0
    writers: int = 0
    file: AsyncRegionFile | None = None  # the writer, while any descriptor writes
    cache: StripeCache | None = None  # scattered writes, gathered into whole stripes
    next_off: int = 0  # where a sequential stream of writes goes next
    unlinked: bool = False  # its name is gone; delete the region at the last close
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class Handle:
    of: OpenFile
    write: bool
    append: bool


def _ns(t: float) -> int:
    return int(t * 1e9)


class FSBase(pyfuse3.Operations):
    """State and helpers every part of the file system shares."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, client: AsyncClient, prefix: str = "", policy: str = "ec:4+2") -> None:
        super().__init__()
        self.client = client
        self.md = client.meta
        self.prefix = prefix.strip("/")
        self.policy = parse_policy(policy).name
        self.inodes = Inodes()
        self.opens: dict[int, OpenFile] = {}  # inode -> open state
        self.handles: dict[int, Handle] = {}
        self._next_fh = 1
        self.uid = os.getuid()
        self.gid = os.getgid()
        self.started = time.time()

    # -- helpers --------------------------------------------------------------------

    async def _zk(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    def _path(self, ino: int) -> str:
        path = self.inodes.path(ino)
        if path is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return path

    def _child(self, parent: int, name: bytes) -> str:
        try:
            part = name.decode()
        except UnicodeDecodeError:
            raise pyfuse3.FUSEError(errno.EINVAL) from None
        if "/" in part or part in (".", "..", ""):
            raise pyfuse3.FUSEError(errno.EINVAL)
        if len(name) > 255:
            raise pyfuse3.FUSEError(errno.ENAMETOOLONG)
        return join(self._path(parent), part)

    def _region(self, path: str) -> str:
        return region_name(self.prefix, path)

    def _visible(self) -> list[str]:
        """Mount paths of every region and directory record the mount shows."""
        names = self.md.region_names(self.prefix + "/" if self.prefix else "")
        names += list(self.md.dirs())
        out = []
        for n in names:
            p = mount_path(self.prefix, n)
            if p is not None:
                out.append(p)
        return out

    async def _kind(self, path: str) -> RegionMeta | DirMeta | None:
        """What a mount path is now: a region, a directory, or nothing."""
        if path == "":
            return DirMeta("", mtime=self.started, ctime=self.started)
        name = self._region(path)
        try:
            return await self.client.region_meta(name)
        except RegionNotFound:
            pass
        d = await self._zk(self.md.get_dir, name)
        if d is not None:
            return d  # type: ignore[no-any-return]
        direct, implied = await self._zk(lambda: children(parent_of(path), self._visible()))
        base = path.rpartition("/")[2]
        if base in implied or base in direct:
            return DirMeta(name, mtime=self.started, ctime=self.started)
        return None

    def _attrs(self, ino: int, what: RegionMeta | DirMeta) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = ino
        e.generation = 0
        e.entry_timeout = CACHE
        e.attr_timeout = CACHE
        e.st_uid = what.uid if what.uid >= 0 else self.uid
        e.st_gid = what.gid if what.gid >= 0 else self.gid
        e.st_mtime_ns = _ns(what.mtime)
        e.st_ctime_ns = _ns(max(what.ctime, what.mtime))
        e.st_atime_ns = _ns(what.mtime)
        if isinstance(what, RegionMeta):
            size = what.size
            of = self.opens.get(ino)
            if of is not None and of.file is not None:
                size = of.file.size  # our writes not yet flushed count
                if of.cache is not None:
                    size = of.cache.size(size)
            e.st_mode = stat.S_IFREG | (what.mode & 0o7777)
            e.st_nlink = 0 if of is not None and of.unlinked else 1
            e.st_size = size
            e.st_blocks = -(-size // 512)
            layout = Layout.of(what.policy, what.chunk, what.slab_stripes)
            e.st_blksize = layout.stripe_data
        else:
            e.st_mode = stat.S_IFDIR | (what.mode & 0o7777)
            e.st_nlink = 2
            e.st_size = 0
            e.st_blocks = 0
            e.st_blksize = BLOCK
        return e

    async def _entry(self, path: str) -> pyfuse3.EntryAttributes:
        what = await self._kind(path)
        if what is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(self.inodes.ino(path), what)

    # -- names --------------------------------------------------------------------

    async def _sync(self, of: OpenFile) -> None:
        """Every write of this file stored and committed: durable by its policy."""
        if of.file is None:
            return
        if of.cache is not None:
            await of.cache.flush(of.file.size)
        await of.file.flush()
