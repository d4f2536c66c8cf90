"""Page patches on a node: small overwrites kept beside a stripe's fragments.

A patch replaces ``data`` at byte ``at`` of one data fragment (``index``) of a stripe,
as write ``version``. The writer sends it to the node holding that fragment and to the
stripe's M parity nodes, instead of re-encoding the stripe (docs/protocol.md, "The
page log"). Like a fragment it is staged until the region's commit point passes its
version. The node holding the fragment lays its committed patches over the fragment's
committed bytes when it is read; the parity nodes keep them for readers that decode
the fragment around that node. A patch goes once a fragment of its stripe is
committed here at its version or later: the writer folded it into the stripe (every
later write of a patched stripe reads the patched bytes and rewrites every patched
column, so a newer committed fragment holds the patch's bytes).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from crc32c import crc32c

from ecmem import wire

from .errors import StoreError


@dataclass(frozen=True, slots=True)
class Patch:
    version: int
    index: int  # the data fragment whose bytes it replaces
    at: int  # byte offset in that fragment
    data: bytes
    write: tuple[int, int, int] = (-1, -1, 0)  # its write: first, last stripe, end byte

    @property
    def end(self) -> int:
        return self.at + len(self.data)


# Called with ("add" | "drop", region, stripe, patch) on every change (the disk mirror).
PatchListener = Callable[[str, str, int, Patch], None]


@dataclass
class PatchBook:
    """One region's patches on one node, by stripe, oldest version first."""

    stripes: dict[int, list[Patch]] = field(default_factory=dict)
    size: int = 0  # bytes held
    swept: tuple[int, int] = (0, 0)  # (epoch, base) of the last commit that dropped old ones

    def add(self, stripe: int, patch: Patch) -> Patch | None:
        """Keep ``patch``; returns the one of the same version and index it replaced."""
        patches = self.stripes.setdefault(stripe, [])
        if not patches or patches[-1].version < patch.version:  # the usual case: newest
            patches.append(patch)
            self.size += len(patch.data)
            return None
        old = next(
            (p for p in patches if p.version == patch.version and p.index == patch.index), None
        )
        if old is not None:
            patches.remove(old)
            self.size -= len(old.data)
        versions = [p.version for p in patches]
        patches.insert(bisect.bisect_right(versions, patch.version), patch)
        self.size += len(patch.data)
        return old

    def of(
        self, stripe: int, index: int | None = None, after: int = 0, upto: int = 0
    ) -> list[Patch]:
        """Patches of a stripe (of one fragment ``index``), newer than ``after`` and (if
        ``upto``) not newer than ``upto``, oldest first."""
        return [
            p
            for p in self.stripes.get(stripe, ())
            if p.version > after
            and (not upto or p.version <= upto)
            and (index is None or p.index == index)
        ]

    def drop(
        self, stripes: Iterable[int], which: Callable[[Patch], bool]
    ) -> list[tuple[int, Patch]]:
        """Remove the patches of ``stripes`` that ``which`` picks; returns them."""
        gone: list[tuple[int, Patch]] = []
        for stripe in list(stripes):
            patches = self.stripes.get(stripe)
            if not patches:
                continue
            keep = [p for p in patches if not which(p)]
            gone.extend((stripe, p) for p in patches if which(p))
            if keep:
                self.stripes[stripe] = keep
            else:
                del self.stripes[stripe]
        self.size -= sum(len(p.data) for _, p in gone)
        return gone

    def entries(self) -> Iterator[tuple[int, Patch]]:
        for stripe in sorted(self.stripes):
            for p in self.stripes[stripe]:
                yield stripe, p


def overlay(
    data: bytes | bytearray | memoryview | tuple[memoryview, ...], lo: int, patches: Iterable[Patch]
) -> bytearray | None:
    """``data`` (fragment bytes from ``lo``, maybe in pieces) with ``patches`` laid over
    it in order, or None if none touches it."""
    out: bytearray | None = None
    hi = lo + (sum(len(d) for d in data) if isinstance(data, tuple) else len(data))
    for p in patches:
        a, b = max(lo, p.at), min(hi, p.end)
        if a >= b:
            continue
        if out is None:
            out = bytearray(b"".join(data)) if isinstance(data, tuple) else bytearray(data)
        out[a - lo : b - lo] = p.data[a - p.at : b - p.at]
    return out


class PatchStore:
    """The store's part that keeps patches (mixed into FragmentStore)."""

    capacity: int
    overhead: int
    used: int
    fencing: bool
    patch_listeners: list[PatchListener]

    def region(self, region: str) -> Any:
        raise NotImplementedError

    def check_epoch(self, region: str, epoch: int) -> None:
        raise NotImplementedError

    def commit(self, region: str, upto: int, base: int = 0) -> int:
        raise NotImplementedError

    def put_patch(
        self,
        region: str,
        stripe: int,
        index: int,
        holder: int,
        version: int,
        at: int,
        crc: int,
        data: bytes,
        write: tuple[int, int, int] = (-1, -1, 0),
        lac: int = 0,
        base: int = 0,
    ) -> None:
        """Stage a patch of fragment ``index`` of a stripe on the node holding fragment
        ``holder`` of it (see the module's doc)."""
        self.check_epoch(region, wire.epoch_of(version))
        if crc32c(data) != crc:
            raise StoreError(
                wire.E_CORRUPT,
                f"patch {region}/{stripe}/{index}@{version} arrived damaged (crc32c "
                "mismatch); the sender will retry",
            )
        st = self.region(region)  # first: a commit point for a region new here counts
        if lac:
            self.commit(region, lac, base)
        if wire.epoch_of(version) < wire.epoch_of(st.lac) and self.fencing:
            # A newer writer's commit point is here though its fence was missed: this
            # patch would escape the sweep of the old epoch's writes.
            raise StoreError(
                wire.E_FENCED,
                f"region {region}: a writer of epoch {wire.epoch_of(st.lac)} took over; "
                f"this writer's epoch {wire.epoch_of(version)} is fenced off",
            )
        self._keep(region, st, stripe, holder, Patch(version, index, at, bytes(data), write))

    def repair_patch(
        self,
        region: str,
        stripe: int,
        holder: int,
        patch: Patch,
        crc: int,
        epoch: int,
        lac: int,
        base: int,
    ) -> bool:
        """Keep a committed patch beside rebuilt fragment ``holder`` of a stripe, for a
        rebuilder holding the lease of ``epoch`` that knows the region's commit point
        ``lac`` (and recovered ``base``). False if a fragment committed here holds it
        already (folded since)."""
        self.check_epoch(region, epoch)
        if crc32c(patch.data) != crc:
            raise StoreError(
                wire.E_CORRUPT,
                f"patch {region}/{stripe}/{patch.index}@{patch.version} arrived damaged "
                "(crc32c mismatch); the rebuilder will retry",
            )
        st = self.region(region)  # first: a commit point for a region new here counts
        self.commit(region, lac, base)
        folded = st.committed.get((stripe, holder))
        if folded is not None and folded.version >= patch.version:
            return False
        self._keep(region, st, stripe, holder, patch)
        return True

    def _keep(self, region: str, st: Any, stripe: int, holder: int, patch: Patch) -> None:
        if self.used + self.overhead + len(patch.data) > self.capacity:
            raise StoreError(
                wire.E_NO_SPACE,
                f"node is full: {self.used + self.overhead} of {self.capacity} bytes used, "
                f"{len(patch.data)} more asked; add nodes or free regions",
            )
        if (stripe, holder) not in st.committed and (stripe, holder) not in st.staged:
            raise StoreError(
                wire.E_NOT_FOUND,
                f"no fragment {region}/{stripe}/{holder} to keep a patch beside; write the "
                "stripe whole",
            )
        old = st.patches.add(stripe, patch)
        self.used += len(patch.data) - (len(old.data) if old is not None else 0)
        self._patched("add", region, stripe, [patch])
        folded = st.committed.get((stripe, holder))
        if folded is not None and folded.version >= patch.version:
            self.trim(region, st, stripe, folded.version)  # folded already: nothing to keep

    def stripe_base(self, region: str, stripe: int) -> int:
        """The newest version of ``stripe`` committed here (its patches up to it are
        dropped: folded); 0 if none."""
        st = self.region(region)
        held = (st.committed.get((stripe, i)) for i in range(wire.MAX_INDEX + 1))
        return max((f.version for f in held if f is not None), default=0)

    def patches_of(
        self, region: str, stripe: int, index: int | None, after: int, asof: int
    ) -> list[Patch]:
        """Patches a reader may lay over a fragment of ``stripe`` at version ``after``:
        committed ones, or for the writer (``asof``) its own up to that version."""
        st = self.region(region)
        upto = asof or st.lac
        return st.patches.of(stripe, index, after, upto) if upto else []

    def patch_entries(self, region: str) -> Iterator[list[int | str]]:
        """[region, stripe, index, version, length, first, last, end] of each patch."""
        st = self.region(region)
        for stripe, p in st.patches.entries():
            yield [region, stripe, p.index, p.version, len(p.data), *p.write]

    def trim(self, region: str, st: Any, stripe: int, upto: int) -> None:
        """A fragment of ``stripe`` is committed here at ``upto``: patches up to it are
        folded into the stripe."""
        self._dropped(region, st.patches.drop([stripe], lambda p: p.version <= upto))

    def sweep_patches(self, region: str, st: Any, epoch: int) -> None:
        """Drop patches of epochs older than ``epoch`` that the region's recovery did not
        keep (above ``st.base``). Once per (epoch, base): no older epoch's patch is taken
        after a newer epoch's commit point."""
        if st.patches.swept == (epoch, st.base):
            return
        base = st.base
        self.drop_patches(
            region,
            st,
            st.patches.stripes,
            lambda p: wire.epoch_of(p.version) < epoch and p.version > base,
        )
        st.patches.swept = (epoch, base)

    def drop_patches(
        self, region: str, st: Any, stripes: Iterable[int], which: Callable[[Patch], bool]
    ) -> int:
        return self._dropped(region, st.patches.drop(stripes, which))

    def _dropped(self, region: str, gone: list[tuple[int, Patch]]) -> int:
        for stripe, p in gone:
            self.used -= len(p.data)
            self._patched("drop", region, stripe, [p])
        return len(gone)

    def _patched(self, event: str, region: str, stripe: int, patches: list[Patch]) -> None:
        for listener in self.patch_listeners:
            for p in patches:
                listener(event, region, stripe, p)
