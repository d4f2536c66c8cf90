"""Changes to the namespace: mkdir, rmdir, unlink and rename, each one ZooKeeper
transaction; a renamed or unlinked file this mount holds open keeps its region (and
its lease) until the last close, in the trash if it was replaced."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import time

import pyfuse3

from ecmem.meta.catalog import trash_name
from ecmem.meta.model import DirMeta, RegionMeta

from .base import FSBase, OpenFile
from .errno_map import fuse_errors
from .tree import children

# The coordinator's rebuilder holds a region's write lease while it repairs its slabs:
# a rename waits that long for it, then says EBUSY.
REBUILDER_WAIT = 30.0

log = logging.getLogger("ecmem.mount")


class NamespaceOps(FSBase):
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
        if await self._writer_elsewhere(src.name) and (of is None or of.file is None):
            log.info("rename %s: region %s is open for writing elsewhere", old, src.name)
            raise pyfuse3.FUSEError(errno.EBUSY)
        dst = await self._kind(new)
        victim = self._open_region(dst.id) if isinstance(dst, RegionMeta) else None
        if isinstance(dst, RegionMeta) and (victim is None or victim.file is None):
            if await self._writer_elsewhere(target):
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

    async def _writer_elsewhere(self, name: str) -> str:
        """Who else holds the region's write lease ("" if none). The rebuilder holds it
        only while it repairs the region's slabs: that is waited out, not EBUSY."""
        deadline = time.monotonic() + REBUILDER_WAIT
        while True:
            got: tuple[str, bool] = await self._zk(self._lease_holder, name)
            holder, rebuilding = got
            if not rebuilding or time.monotonic() > deadline:
                return holder
            await asyncio.sleep(0.2)

    def _lease_holder(self, name: str) -> tuple[str, bool]:
        """The lease's holder ("" if none, or this mount), and whether it rebuilds."""
        try:
            raw, st = self.md.zk.get(self.md.paths.lease(name))
        except Exception:
            return "", False
        if st.ephemeralOwner in (0, self.md.zk.client_id[0]):  # ours, or no session's
            return "", False
        try:
            info = json.loads(raw)
            return str(info.get("holder", "")) or "?", bool(info.get("rebuild"))
        except (ValueError, AttributeError):
            return raw.decode(errors="replace") or "?", False
