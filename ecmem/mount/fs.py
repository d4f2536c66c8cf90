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
from ecmem.errors import EcmemError, RegionExists, RegionNotFound
from ecmem.layout import Layout
from ecmem.meta.catalog import trash_name
from ecmem.meta.model import DirMeta, RegionMeta
from ecmem.policy import parse_policy
from ecmem.regionfile import AsyncRegionFile

from .errno_map import fuse_errors
from .stripecache import StripeCache
from .tree import ROOT_INODE, Inodes, children, join, mount_path, parent_of, region_name

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


class RegionFS(pyfuse3.Operations):
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
                await of.file.truncate(size)
                if of.cache is not None:
                    of.cache.truncated(size)
            return
        try:
            await self.client.truncate(name, size)
        finally:
            await self.client.release(name)

    @fuse_errors
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        path = self._child(parent_inode, name)
        if await self._kind(path) is not None:
            raise pyfuse3.FUSEError(errno.EEXIST)
        now = time.time()
        meta = DirMeta(self._region(path), mode & 0o7777 & ~ctx.umask, ctx.uid, ctx.gid, now, now)
        await self._zk(self.md.put_dir, meta, True)
        return self._attrs(self.inodes.ino(path), meta)

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        path = self._child(parent_inode, name)
        what = await self._kind(path)
        if what is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if isinstance(what, RegionMeta):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        direct, implied = await self._zk(lambda: children(path, self._visible()))
        if direct or implied:
            raise pyfuse3.FUSEError(errno.ENOTEMPTY)
        await self._zk(self.md.delete_dir, self._region(path))
        self.inodes.drop(path)

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        path = self._child(parent_inode, name)
        what = await self._kind(path)
        if what is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if not isinstance(what, RegionMeta):
            raise pyfuse3.FUSEError(errno.EISDIR)
        ino = self.inodes.known(path)
        of = self.opens.get(ino) if ino is not None else None
        if of is not None:
            # Open here: keep the data under a hidden name until the last close, holding
            # its lease so that the coordinator leaves it be while this mount lives.
            async with of.lock:
                await self._move_open(of, trash_name(what.id), replace=False)
                of.unlinked = True
                if of.file is None:
                    await self.client.writer(of.name, None)
        else:
            await self.client.delete_region(what.name)
        self.inodes.drop(path)

    async def _move_open(self, of: OpenFile, new: str, replace: bool) -> RegionMeta | None:
        """Rename a region this mount has open, moving its write lease along."""
        if of.file is not None:
            await self._sync(of)
            await self.client.release(of.name)
        try:
            displaced: RegionMeta | None = await self._zk(
                self.md.rename_region, of.name, new, replace
            )
            self.client.forget(of.name, new)
            of.name = new
        finally:
            if of.file is not None:
                of.file.name = of.name
                await self.client.writer(of.name, None, file=True)
        return displaced

    @fuse_errors
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        old = self._child(parent_inode_old, name_old)
        new = self._child(parent_inode_new, name_new)
        if old == new:
            return
        src = await self._kind(old)
        if src is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        dst = await self._kind(new)
        if dst is not None and flags & pyfuse3.RENAME_NOREPLACE:
            raise pyfuse3.FUSEError(errno.EEXIST)
        if isinstance(src, RegionMeta):
            if dst is not None and not isinstance(dst, RegionMeta):
                raise pyfuse3.FUSEError(errno.EISDIR)
            await self._rename_file(old, new, src)
        else:
            if isinstance(dst, RegionMeta):
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            if new.startswith(old + "/"):
                raise pyfuse3.FUSEError(errno.EINVAL)
            if dst is not None:
                direct, implied = await self._zk(lambda: children(new, self._visible()))
                if direct or implied:
                    raise pyfuse3.FUSEError(errno.ENOTEMPTY)
            await self._rename_dir(old, new)
        self.inodes.move(old, new)

    def _open_region(self, region_id: str) -> OpenFile | None:
        return next((of for of in self.opens.values() if of.id == region_id), None)

    async def _rename_file(self, old: str, new: str, src: RegionMeta) -> None:
        target = self._region(new)
        of = self._open_region(src.id)
        if await self._zk(self._lease_holder, src.name) and (of is None or of.file is None):
            log.info("rename %s: region %s is open for writing elsewhere", old, src.name)
            raise pyfuse3.FUSEError(errno.EBUSY)
        dst = await self._kind(new)
        victim = self._open_region(dst.id) if isinstance(dst, RegionMeta) else None
        if isinstance(dst, RegionMeta) and (victim is None or victim.file is None):
            if await self._zk(self._lease_holder, target):
                log.info("rename over %s: it is open for writing elsewhere", new)
                raise pyfuse3.FUSEError(errno.EBUSY)
        if victim is not None and victim.file is not None:
            # Open for writing here: its lease must leave the name before the name moves.
            async with victim.lock:
                await self._sync(victim)
                await self.client.release(victim.name)
        displaced: RegionMeta | None = None
        try:
            if of is not None:
                async with of.lock:
                    displaced = await self._move_open(of, target, replace=True)
            else:
                displaced = await self._zk(self.md.rename_region, src.name, target, True)
                self.client.forget(src.name, target)
        finally:
            if victim is not None:
                victim.name = displaced.name if displaced is not None else victim.name
                victim.unlinked = displaced is not None
                if victim.file is not None:
                    victim.file.name = victim.name
                    await self.client.writer(victim.name, None, file=True)
                elif victim.unlinked:
                    await self.client.writer(victim.name, None)  # see unlink
        if displaced is not None and victim is None:
            await self.client.delete_region(displaced.name)

    async def _rename_dir(self, old: str, new: str) -> None:
        """Move every region and directory record under ``old``; one at a time, so a
        crash midway leaves some names moved (each region whole, under one name)."""
        src, dst = self._region(old), self._region(new)
        names = await self._zk(self.md.region_names, src + "/")
        for name in names:
            await self._zk(self.md.rename_region, name, dst + name[len(src) :], False)
            self.client.forget(name)
        dirs = await self._zk(self.md.dirs)
        for name, d in sorted(dirs.items()):
            if name == src or name.startswith(src + "/"):
                d.name = dst + name[len(src) :]
                d.ctime = time.time()
                await self._zk(self.md.put_dir, d)
                await self._zk(self.md.delete_dir, name)
        for of in self.opens.values():
            if of.name.startswith(src + "/"):
                of.name = dst + of.name[len(src) :]
                if of.file is not None:
                    of.file.name = of.name

    def _lease_holder(self, name: str) -> str:
        try:
            raw, st = self.md.zk.get(self.md.paths.lease(name))
        except Exception:
            return ""
        if st.ephemeralOwner == self.md.zk.client_id[0]:
            return ""
        return str(raw.decode(errors="replace"))

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

    async def _sync(self, of: OpenFile) -> None:
        """Every write of this file stored and committed: durable by its policy."""
        if of.file is None:
            return
        if of.cache is not None:
            await of.cache.flush(of.file.size)
        await of.file.flush()

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
