"""Fragments in RAM: the storage logic of a node, with no sockets in it.

A fragment arrives *staged*: kept beside the committed version of its key,
invisible to ordinary reads. It becomes *committed* when the node learns that
its write is committed: a later Put or a Commit carries the region's commit
point (last-add-confirmed). A new writer's recovery commits a prefix of the
staged writes and discards the rest. Staged versions of a key are only those of
writes still in flight, so memory stays bounded however many writes a region sees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from crc32c import crc32c

from ecmem import checksum, wire

from .errors import StoreError
from .patches import PatchListener, PatchStore, overlay
from .records import Fragment, Key, ReadResult, RegionState

log = logging.getLogger(__name__)

# What a region's state costs beyond its bytes, charged against the capacity: fences
# for made-up regions must fill the node's books, not its memory unseen.
REGION_COST = 512


def _check_arrival(
    region: str, stripe: int, index: int, length: int, crc: int, data: bytes | bytearray
) -> None:
    if crc32c(data) != crc:
        raise StoreError(
            wire.E_CORRUPT,
            f"fragment {region}/{stripe}/{index} arrived damaged (crc32c mismatch); "
            "the sender will retry",
        )
    if len(data) > length:
        raise StoreError(wire.E_BAD_REQUEST, "fragment data is longer than the fragment")


_zeros = memoryview(bytes(1 << 20))


def _zero_view(n: int) -> memoryview:
    global _zeros
    if n > len(_zeros):
        _zeros = memoryview(bytes(n))
    return _zeros[:n]


# Called with (event, region, stripe, index, fragment, staged) on every change:
# event "put" (fragment stored), "drop" (fragment removed), "promote" (staged committed).
Listener = Callable[[str, str, int, int, Fragment | None, bool], None]


class FragmentStore(PatchStore):
    """Fragments keyed by (region id, stripe, index), bounded by ``capacity`` bytes."""

    def __init__(self, capacity: int, page: int = checksum.PAGE) -> None:
        self.capacity = capacity
        self.page = page
        self.used = 0  # bytes of fragments and patches
        self.overhead = 0  # REGION_COST per region state held
        self._regions: dict[str, RegionState] = {}
        self.listeners: list[Listener] = []
        self.patch_listeners: list[PatchListener] = []
        # called with (region, epoch, lac, base) when those change
        self.state_listeners: list[Callable[[str, int, int, int], None]] = []
        self.fencing = True  # off only in a deliberately broken test build

    def __len__(self) -> int:
        return sum(
            len(r.committed) + sum(len(v) for v in r.staged.values())
            for r in self._regions.values()
        )

    @property
    def epochs(self) -> dict[str, int]:
        return {rid: st.epoch for rid, st in self._regions.items() if st.epoch}

    def region(self, region: str, loading: bool = False) -> RegionState:
        """The region's state, made if new (charged against the capacity; refused when
        full, unless ``loading`` what a data dir held: a node must come back whole)."""
        st = self._regions.get(region)
        if st is None:
            if not loading and self.used + self.overhead + REGION_COST > self.capacity:
                raise StoreError(
                    wire.E_NO_SPACE,
                    f"node is full: {self.used} bytes of data and {len(self._regions)} "
                    f"regions' state of {self.capacity} bytes; add nodes or free regions",
                )
            st = self._regions[region] = RegionState()
            self.overhead += REGION_COST
        return st

    def _forget(self, region: str) -> None:
        if self._regions.pop(region, None) is not None:
            self.overhead -= REGION_COST

    def _notify(
        self, event: str, region: str, key: Key, frag: Fragment | None, staged: bool
    ) -> None:
        for listener in self.listeners:
            listener(event, region, key[0], key[1], frag, staged)

    def _state_changed(self, region: str, st: RegionState) -> None:
        for listener in self.state_listeners:
            listener(region, st.epoch, st.lac, st.base)

    # -- writing ------------------------------------------------------------------

    def put(
        self,
        region: str,
        stripe: int,
        index: int,
        version: int,
        length: int,
        crc: int,
        data: bytes | bytearray,
        write: tuple[int, int, int] = (-1, -1, 0),
        lac: int = 0,
        base: int = 0,
    ) -> None:
        """Stage a fragment of ``length`` bytes given by its prefix ``data`` (the rest is
        zeros) whose crc32c is ``crc``. ``lac`` and ``base`` are the writer's commit
        points (see commit)."""
        self.check_epoch(region, wire.epoch_of(version))
        _check_arrival(region, stripe, index, length, crc, data)
        self.region(region)  # first: a commit point for a region new here counts
        if lac:
            self.commit(region, lac, base)
        crcs = checksum.page_crcs_padded(data, length, self.page)
        self.restore(region, stripe, index, Fragment(data, version, crcs, length, write))

    def put_slice(
        self,
        region: str,
        stripe: int,
        index: int,
        version: int,
        length: int,
        source: int,
        at: int,
        crc: int,
        data: bytes | bytearray,
        write: tuple[int, int, int] = (-1, -1, 0),
        lac: int = 0,
        base: int = 0,
    ) -> None:
        """Stage version ``version`` of a fragment as version ``source`` of it (staged or
        committed here) with ``data`` in place at byte ``at``: a write of a few pages
        sends each node only the column of the stripe it changes."""
        self.check_epoch(region, wire.epoch_of(version))
        _check_arrival(region, stripe, index, length - at, crc, data)  # the slice's room
        st = self.region(region)  # first: a commit point for a region new here counts
        if lac:
            self.commit(region, lac, base)
        key = (stripe, index)
        src = st.committed.get(key)
        if src is None or src.version != source:
            src = next((f for f in st.staged.get(key, ()) if f.version == source), None)
        if src is None or src.length != length:
            raise StoreError(
                wire.E_NOT_FOUND,
                f"fragment {region}/{stripe}/{index} has no version {source} to write a "
                "slice into; send the whole fragment",
            )
        new = bytearray(src.data)
        if len(new) < at:
            new.extend(bytes(at - len(new)))
        new[at : at + len(data)] = data
        page = self.page
        p0, p1 = at // page, -(-(at + len(data)) // page)
        lo, hi = p0 * page, min(length, p1 * page)
        sums = checksum.page_crcs_padded(memoryview(new)[lo : min(hi, len(new))], hi - lo, page)
        crcs = src.crcs[: p0 * 4] + sums + src.crcs[p1 * 4 :]
        self.restore(region, stripe, index, Fragment(new, version, crcs, length, write))

    def repair(
        self,
        region: str,
        stripe: int,
        index: int,
        version: int,
        length: int,
        crc: int,
        data: bytes | bytearray,
        write: tuple[int, int, int],
        epoch: int,
    ) -> bool:
        """Keep a rebuilt fragment of a committed write, committed at once, for a
        rebuilder holding the lease of ``epoch`` (the same version is overwritten: a
        scrub repairs damaged copies so). False if a newer version is committed here."""
        self.check_epoch(region, epoch)
        _check_arrival(region, stripe, index, length, crc, data)
        st = self.region(region)
        old = st.committed.get((stripe, index))
        if old is not None and old.version > version:
            return False  # a newer write landed since: the rebuilt copy is stale
        crcs = checksum.page_crcs_padded(data, length, self.page)
        self.restore(
            region, stripe, index, Fragment(data, version, crcs, length, write), staged=False
        )
        return True

    def restore(
        self,
        region: str,
        stripe: int,
        index: int,
        frag: Fragment,
        *,
        staged: bool | None = None,
        loading: bool = False,
    ) -> None:
        """Keep a fragment whose page sums are known: staged, unless its version is
        committed already (``staged`` forces the choice). ``loading`` from a data dir,
        nothing is refused for room: the node must come back whole."""
        st = self.region(region, loading)
        key = (stripe, index)
        committed = st.committed.get(key)
        if committed is not None and committed.version > frag.version:
            raise StoreError(
                wire.E_BAD_REQUEST,
                f"fragment {region}/{stripe}/{index} holds committed version "
                f"{committed.version}, newer than the {frag.version} written",
            )
        as_staged = frag.version > st.lac if staged is None else staged
        if as_staged:
            versions = st.staged.setdefault(key, [])
            old = next((f for f in versions if f.version == frag.version), None)
        else:
            old = committed
        growth = len(frag.data) - (len(old.data) if old is not None else 0)
        full = self.used + self.overhead + growth > self.capacity
        if growth > 0 and full and not loading:
            if as_staged and not versions:
                del st.staged[key]
            raise StoreError(
                wire.E_NO_SPACE,
                f"node is full: {self.used + self.overhead} of {self.capacity} bytes used, "
                f"{len(frag.data)} more asked; add nodes or free regions",
            )
        self.used += growth
        if as_staged:
            if old is not None:
                versions.remove(old)
            versions.append(frag)
            versions.sort(key=lambda f: f.version)
        else:
            st.committed[key] = frag
            self._drop_staged(region, st, key, lambda v: v <= frag.version)
        self._notify("put", region, key, frag, as_staged)
        if not as_staged:
            self.trim(region, st, stripe, frag.version)

    def _drop_staged(
        self, region: str, st: RegionState, key: Key, which: Callable[[int], bool]
    ) -> int:
        versions = st.staged.get(key)
        if not versions:
            return 0
        keep = [f for f in versions if not which(f.version)]
        dropped = len(versions) - len(keep)
        for f in versions:
            if which(f.version):
                self.used -= len(f.data)
        if keep:
            st.staged[key] = keep
        else:
            del st.staged[key]
        if dropped:
            self._notify("drop", region, key, None, True)
        return dropped

    def commit(self, region: str, upto: int, base: int = 0) -> int:
        """Every write up to version ``upto`` is committed; of older epochs' writes those
        up to ``base`` are (the writer's recovery kept them) and no others will ever be.
        Promotes and drops staged fragments accordingly; returns the commit point."""
        st = self._regions.get(region)
        if st is None:
            return 0  # nothing staged here: no state for a region this node never held
        if upto <= st.lac and base <= st.base:
            return st.lac
        st.lac = max(st.lac, upto)
        st.base = max(st.base, base)
        epoch = wire.epoch_of(st.lac)
        for key in list(st.staged):
            self._drop_staged(region, st, key, lambda v: wire.epoch_of(v) < epoch and v > st.base)
            if key in st.staged and st.staged[key][0].version <= st.lac:
                self._promote(region, st, key)
        self.sweep_patches(region, st, epoch)
        self._state_changed(region, st)
        return st.lac

    def _promote(self, region: str, st: RegionState, key: Key) -> None:
        """Commit the newest staged version of ``key`` at or below the commit point."""
        versions = st.staged[key]
        ready = [f for f in versions if f.version <= st.lac]
        if not ready:
            return
        frag = ready[-1]
        old = st.committed.get(key)
        if old is None or old.version < frag.version:
            if old is not None:
                self.used -= len(old.data)
            self.used += len(frag.data)  # counted again below, when the staged list drops it
            st.committed[key] = frag
            self._notify("promote", region, key, frag, False)
            self.trim(region, st, key[0], frag.version)
        self._drop_staged(region, st, key, lambda v: v <= st.lac)

    def discard(self, region: str, above: int) -> int:
        """Drop staged fragments of writes newer than ``above`` (recovery left them out)."""
        st = self._regions.get(region)
        if st is None:
            return 0
        dropped = self.drop_patches(region, st, st.patches.stripes, lambda p: p.version > above)
        return dropped + sum(
            self._drop_staged(region, st, k, lambda v: v > above) for k in list(st.staged)
        )

    # -- reading ------------------------------------------------------------------

    def get(
        self,
        region: str,
        stripe: int,
        index: int,
        offset: int,
        length: int,
        version: int = 0,
        asof: int = 0,
        raw: bool = False,
    ) -> ReadResult:
        """Read a committed fragment, or with ``version`` exactly that version, staged
        or committed (a reader racing a commit asks for it), with its committed patches
        laid over it. With ``asof``, the writer's own view: the newest version up to it
        and patches up to it, staged or not. ``raw``: no patches (to decode from)."""
        st = self._regions.get(region)
        frag = None
        if st is not None:
            key = (stripe, index)
            staged = st.staged.get(key)
            if staged and staged[0].version <= st.lac:
                self._promote(region, st, key)  # its commit point came with another key
            frag = st.committed.get(key)
            if asof:
                newer = [f for f in st.staged.get(key, ()) if f.version <= asof]
                if newer and (frag is None or newer[-1].version > frag.version):
                    frag = newer[-1]
            elif version and (frag is None or frag.version != version):
                frag = next((f for f in st.staged.get(key, ()) if f.version == version), None)
        if frag is None or st is None:
            raise StoreError(wire.E_NOT_FOUND, f"no fragment {region}/{stripe}/{index}")
        size = frag.length
        page = self.page
        end = min(size, offset + length)
        first = min(offset, size) // page
        last = (end + page - 1) // page if end > offset else first
        crcs = frag.crcs[first * 4 : last * 4]
        lo, hi = first * page, min(last * page, size)
        stored = len(frag.data)
        data: memoryview | tuple[memoryview, ...]
        if hi <= stored:
            data = memoryview(frag.data)[lo:hi]
        elif lo >= stored:
            data = _zero_view(hi - lo)
        else:
            data = (memoryview(frag.data)[lo:], _zero_view(hi - stored))
        visible = self.patches_of(region, stripe, None, frag.version, asof)
        mine = [p for p in visible if p.index == index] if not raw else []
        patched = overlay(data, lo, mine)
        if patched is not None:
            crcs = checksum.page_crcs_padded(patched, hi - lo, page)
            data = memoryview(patched)
        # Readers see the stripe as of its newest patch laid over, for torn-read checks.
        write, newest = (mine[-1].write, mine[-1].version) if mine else (frag.write, 0)
        pending = len(visible) - len(mine)
        return ReadResult(frag.version, size, first, crcs, data, write, pending, newest)

    # -- fencing --------------------------------------------------------------------

    def check_epoch(self, region: str, epoch: int) -> None:
        st = self._regions.get(region)
        newest = st.epoch if st is not None else 0
        if epoch < newest and self.fencing:
            raise StoreError(
                wire.E_FENCED,
                f"region {region}: a writer of epoch {newest} took over; this writer's "
                f"epoch {epoch} is fenced off",
            )

    def fence(self, region: str, epoch: int) -> tuple[int, int]:
        """Raise the region's epoch; returns (epoch now in force, commit point)."""
        self.check_epoch(region, epoch)
        st = self.region(region)
        if epoch > st.epoch:
            st.epoch = epoch
            self._state_changed(region, st)
        return st.epoch, st.lac

    # -- housekeeping -----------------------------------------------------------------

    def delete(
        self, region: str, from_stripe: int = 0, epoch: int = 0, until: int = 0, upto: int = 0
    ) -> int:
        """Drop fragments of stripes ``from_stripe`` and later (before ``until``, if not 0),
        of versions up to ``upto`` (if not 0: newer ones were written since, keep them)."""
        if epoch:
            self.check_epoch(region, epoch)
        st = self._regions.get(region)
        if st is None:
            return 0

        def hit(stripe: int) -> bool:
            return stripe >= from_stripe and (not until or stripe < until)

        def old(version: int) -> bool:
            return not upto or version <= upto

        count = 0
        for key in [k for k, f in st.committed.items() if hit(k[0]) and old(f.version)]:
            self.used -= len(st.committed.pop(key).data)
            self._notify("drop", region, key, None, False)
            count += 1
        for key in [k for k in st.staged if hit(k[0])]:
            count += self._drop_staged(region, st, key, old)
        stripes = [s for s in st.patches.stripes if hit(s)]
        count += self.drop_patches(region, st, stripes, lambda p: old(p.version))
        if from_stripe == 0 and not epoch and not until and not upto:  # the region is gone
            self._forget(region)
        return count

    def entries(self, region: str = "", staged: bool = False) -> Iterator[list[int | str]]:
        """[region, stripe, index, version, length, first, last, end] of each fragment."""
        regions = [region] if region else sorted(self._regions)
        for rid in regions:
            st = self._regions.get(rid)
            if st is None:
                continue
            if staged:
                frags = [(k, f) for k, fs in sorted(st.staged.items()) for f in fs]
            else:
                frags = sorted(st.committed.items())
            for (stripe, index), frag in frags:
                yield [rid, stripe, index, frag.version, frag.length, *frag.write]

    def corrupt(self, region: str, stripe: int, index: int, mode: str, offset: int) -> None:
        st = self._regions.get(region)
        frag = st.committed.get((stripe, index)) if st is not None else None
        if st is None or frag is None:
            raise StoreError(wire.E_NOT_FOUND, f"no fragment {region}/{stripe}/{index}")
        if mode == "flip":
            if offset >= frag.length:
                raise StoreError(wire.E_BAD_REQUEST, f"offset {offset} past the fragment's end")
            data = bytearray(frag.data)
            if offset >= len(data):
                self.used += offset + 1 - len(data)
                data.extend(bytes(offset + 1 - len(data)))
            data[offset] ^= 0xFF
            frag.data = data
        else:
            self.used -= len(frag.data) - min(offset, len(frag.data))
            frag.data = bytes(frag.data[:offset])
            frag.length = min(frag.length, offset)
        log.warning(
            "debug: corrupted fragment %s/%s/%s (%s at %d)", region, stripe, index, mode, offset
        )
        self._notify("put", region, (stripe, index), frag, False)

    def stats(self) -> dict[str, int]:
        return {
            "capacity": self.capacity,
            "used": self.used + self.overhead,
            "fragments": len(self),
            "staged": sum(sum(len(v) for v in r.staged.values()) for r in self._regions.values()),
            "regions": len(self._regions),
        }
