"""The FUSE file system: regions as files, their names' parents as directories.

Close-to-open consistency, as NFS gives: a file's writes reach the nodes as they
are made and are committed (durable by the region's policy, visible to other
mounts) by fsync and by every close; another mount sees them when it next opens
the file. Attribute and entry caches last ``CACHE`` seconds.

A file open for writing holds its region's write lease for as long as any
descriptor of this mount has it open for writing; a file open for writing on
another mount (or by another client) gives EBUSY.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from typing import Any

import pyfuse3

from ecmem.errors import EcmemError, RegionExists
from ecmem.layout import Layout
from ecmem.meta.model import DirMeta, RegionMeta
from ecmem.policy import parse_policy
from ecmem.regionfile import AsyncRegionFile

from .base import BLOCK, STRIPE_CACHE, Handle, OpenFile
from .errno_map import fuse_errors
from .namespace import NamespaceOps
from .stripecache import StripeCache
from .tree import ROOT_INODE, children, join, parent_of

log = logging.getLogger("ecmem.mount")


class RegionFS(NamespaceOps):
    @fuse_errors
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        if name == b".":
            return await self._entry(self._path(parent_inode))
        if name == b"..":
            return await self._entry(parent_of(self._path(parent_inode)))
        return await self._entry(self._child(parent_inode, name))

    async def forget(self, inode_list: Any) -> None:
        return None  # numbers stay valid for the life of the mount

    @fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        of = self.opens.get(inode)
        if of is not None and of.unlinked:
            meta = await self.client.region_meta(of.name)
            return self._attrs(inode, meta)
        return await self._entry(self._path(inode))

    @fuse_errors
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        of = self.opens.get(inode)
        path = self._path(inode)
        name = of.name if of is not None else self._region(path)
        what = await self._kind(path) if of is None or not of.unlinked else None
        if what is None and of is not None:
            what = await self.client.region_meta(of.name)
        if what is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if fields.update_size:
            if not isinstance(what, RegionMeta):
                raise pyfuse3.FUSEError(errno.EISDIR)
            await self._truncate(name, of, attr.st_size)
        now = time.time()

        def change(m: Any) -> Any:
            if fields.update_mode:
                m.mode = attr.st_mode & 0o7777
            if fields.update_uid:
                m.uid = attr.st_uid
            if fields.update_gid:
                m.gid = attr.st_gid
            if fields.update_mtime:
                m.mtime = attr.st_mtime_ns / 1e9
            m.ctime = now
            return m

        if fields.update_mode or fields.update_uid or fields.update_gid or fields.update_mtime:
            if isinstance(what, RegionMeta):
                await self._zk(self.md.update_region, name, change)
            else:
                await self._zk(self.md.put_dir, change(DirMeta(**what.__dict__)))
        if of is not None and of.unlinked:
            return self._attrs(inode, await self.client.region_meta(of.name))
        return await self._entry(path)

    async def _truncate(self, name: str, of: OpenFile | None, size: int) -> None:
        if of is not None and of.file is not None:
            async with of.lock:
                await self._sync(of)
                # The last handle may have closed while this waited for the lock.
                if of.file is not None:
                    await of.file.truncate(size)
                    if of.cache is not None:
                        of.cache.truncated(size)
                    return
        try:
            await self.client.truncate(name, size)
        finally:
            await self.client.release(name)

    # -- directories --------------------------------------------------------------

    @fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        path = self._path(inode)
        what = await self._kind(path)
        if what is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if isinstance(what, RegionMeta):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        path = self._path(fh)
        direct, implied = await self._zk(lambda: children(path, self._visible()))
        entries = sorted(direct | implied)
        for i, name in enumerate(entries[start_id:], start_id + 1):
            child = join(path, name)
            what = await self._kind(child)
            if what is None:
                continue  # removed while listing
            attrs = self._attrs(self.inodes.ino(child), what)
            if not pyfuse3.readdir_reply(token, name.encode(), attrs, i):
                return

    async def releasedir(self, fh: int) -> None:
        return None

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        return None  # names are in ZooKeeper, durable once a call returned

    # -- files --------------------------------------------------------------------

    def _handle(self, of: OpenFile, flags: int) -> int:
        write = (flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = Handle(of, write, bool(flags & os.O_APPEND))
        if write:
            of.writers += 1
        else:
            of.readers += 1
        return fh

    async def _open(self, ino: int, meta: RegionMeta, flags: int) -> pyfuse3.FileInfo:
        of = self.opens.get(ino)
        if of is None:
            of = self.opens[ino] = OpenFile(ino, meta.id, meta.name)
        write = (flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)
        async with of.lock:
            try:
                if write and of.file is None:
                    of.file = await self.client.open(of.name, "r+b")
                    of.cache = self._stripe_cache(of.file, meta)
                    of.next_off = 0
                if flags & os.O_TRUNC and write:
                    assert of.file is not None
                    await self._sync(of)
                    await of.file.truncate(0)
                    if of.cache is not None:
                        of.cache.truncated(0)
            except BaseException:
                if not of.readers and not of.writers and self.opens.get(ino) is of:
                    del self.opens[ino]
                raise
            self.opens[ino] = of  # a release may have let go of it while we waited
            fh = self._handle(of, flags)
        return pyfuse3.FileInfo(fh=fh, keep_cache=False)

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        of = self.opens.get(inode)
        what = (
            await self.client.region_meta(of.name)
            if of is not None
            else await self._kind(self._path(inode))
        )
        if what is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if not isinstance(what, RegionMeta):
            raise pyfuse3.FUSEError(errno.EISDIR)
        return await self._open(inode, what, flags)

    @fuse_errors
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        path = self._child(parent_inode, name)
        region = self._region(path)
        existing = await self._kind(path)
        if existing is not None:
            if flags & os.O_EXCL:
                raise pyfuse3.FUSEError(errno.EEXIST)
            if not isinstance(existing, RegionMeta):
                raise pyfuse3.FUSEError(errno.EISDIR)
        else:
            try:
                await self.client.create_region(
                    region, 0, self.policy, mode=mode & 0o7777, uid=ctx.uid, gid=ctx.gid
                )
            except RegionExists:
                if flags & os.O_EXCL:
                    raise pyfuse3.FUSEError(errno.EEXIST) from None
        meta = await self.client.region_meta(region)
        info = await self._open(self.inodes.ino(path), meta, flags)
        return info, await self._entry(path)

    def _stripe_cache(self, f: AsyncRegionFile, meta: RegionMeta) -> StripeCache:
        async def load(offset: int, length: int) -> bytes:
            f.seek(offset)
            return await f.read(length)

        async def store(offset: int, data: memoryview) -> None:
            f.seek(offset)
            await f.write(data)

        stripe = Layout.of(meta.policy, meta.chunk, meta.slab_stripes).stripe_data
        return StripeCache(stripe, STRIPE_CACHE, load, store)

    @fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        of = self.handles[fh].of
        f = of.file
        if f is None:
            return await self.client.read_at(of.name, off, size)
        async with of.lock:
            cache = of.cache
            total = cache.size(f.size) if cache is not None else f.size
            n = max(0, min(size, total - off))
            f.seek(off)
            base = await f.read(min(n, max(0, f.size - off)))
            if cache is None or not cache.touches(off, n):
                return base + bytes(n - len(base))
            out = bytearray(base) + bytearray(n - len(base))
            cache.overlay(off, out)
            return bytes(out)

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        h = self.handles[fh]
        of = h.of
        f = of.file
        if not h.write or f is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        async with of.lock:
            cache = of.cache
            if h.append:
                off = cache.size(f.size) if cache is not None else f.size
            n = len(buf)
            stream = off == of.next_off or (
                cache is not None and off % cache.stripe == 0 and n >= cache.stripe
            )
            if cache is not None and (cache.touches(off, n) or not stream):
                await cache.write(off, buf, f.size)
            else:
                f.seek(off)
                await f.write(buf)
            of.next_off = off + n
            return n

    @fuse_errors
    async def flush(self, fh: int) -> None:
        h = self.handles[fh]
        if h.write and h.of.file is not None:
            async with h.of.lock:
                await self._sync(h.of)

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.flush(fh)

    @fuse_errors
    async def release(self, fh: int) -> None:
        h = self.handles.pop(fh)
        of = h.of
        if h.write:
            of.writers -= 1
        else:
            of.readers -= 1
        # Under the lock: an open of the same file may be waiting to reuse this state.
        async with of.lock:
            if of.writers == 0 and of.file is not None:
                f, cache = of.file, of.cache
                try:
                    if cache is not None:
                        await cache.flush(f.size)
                    await f.close()
                except EcmemError as exc:  # close() was told already, by flush
                    log.warning("file %s closed with writes lost: %s", of.name, exc)
                finally:
                    of.file = of.cache = None
            if of.readers or of.writers or self.opens.get(of.ino) is not of:
                return
            del self.opens[of.ino]
            if of.unlinked:
                await self.client.delete_region(of.name)

    # -- the file system ------------------------------------------------------------

    @fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        live = await self._zk(self.md.live_nodes)
        pol = parse_policy(self.policy)
        capacity = sum(n.capacity for n in live.values())
        free = sum(n.free for n in live.values())
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = BLOCK
        # What a file of the mount's policy can hold: raw bytes less the redundancy.
        s.f_blocks = capacity * pol.k // pol.width // BLOCK
        s.f_bfree = s.f_bavail = free * pol.k // pol.width // BLOCK
        s.f_files = 1 << 32
        s.f_ffree = s.f_favail = (1 << 32) - 1
        s.f_namemax = 255
        return s


__all__ = ["ROOT_INODE", "RegionFS"]
