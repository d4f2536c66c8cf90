"""Fragments in RAM: the storage logic of a node, with no sockets in it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from crc32c import crc32c

from ecmem import checksum, wire

log = logging.getLogger(__name__)

Key = tuple[int, int]  # (stripe, fragment index) within a region


class StoreError(Exception):
    """A request the store refuses; ``code`` is one of the wire error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Fragment:
    """A fragment of ``length`` bytes; only ``data``, a prefix, is kept: the rest is zeros."""

    data: bytes | bytearray
    version: int
    crcs: bytes
    length: int


@dataclass(frozen=True, slots=True)
class ReadResult:
    version: int
    fragment_len: int
    first_page: int
    crcs: bytes
    data: memoryview | tuple[memoryview, ...]


_zeros = memoryview(bytes(1 << 20))


def _zero_view(n: int) -> memoryview:
    global _zeros
    if n > len(_zeros):
        _zeros = memoryview(bytes(n))
    return _zeros[:n]


Listener = Callable[[str, str, int, int, Fragment | None], None]


class FragmentStore:
    """Fragments keyed by (region id, stripe, index), bounded by ``capacity`` bytes."""

    def __init__(self, capacity: int, page: int = checksum.PAGE) -> None:
        self.capacity = capacity
        self.page = page
        self.used = 0
        self._regions: dict[str, dict[Key, Fragment]] = {}
        self.epochs: dict[str, int] = {}  # highest writer epoch seen per region
        self.listeners: list[Listener] = []
        self.fence_listeners: list[Callable[[str, int], None]] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self._regions.values())

    def _notify(self, op: str, region: str, stripe: int, index: int, frag: Fragment | None) -> None:
        for listener in self.listeners:
            listener(op, region, stripe, index, frag)

    def put(
        self,
        region: str,
        stripe: int,
        index: int,
        version: int,
        length: int,
        crc: int,
        data: bytes | bytearray,
    ) -> None:
        """Store a fragment of ``length`` bytes given by its prefix ``data`` (the rest is
        zeros) whose crc32c is ``crc``."""
        self.check_epoch(region, wire.epoch_of(version))
        if crc32c(data) != crc:
            raise StoreError(
                wire.E_CORRUPT,
                f"fragment {region}/{stripe}/{index} arrived damaged (crc32c mismatch); "
                "the client will retry",
            )
        if len(data) > length:
            raise StoreError(wire.E_BAD_REQUEST, "fragment data is longer than the fragment")
        crcs = checksum.page_crcs_padded(data, length, self.page)
        self.restore(region, stripe, index, version, crcs, data, length)

    def restore(
        self,
        region: str,
        stripe: int,
        index: int,
        version: int,
        crcs: bytes,
        data: bytes | bytearray,
        length: int,
    ) -> None:
        """Store a fragment with its per-page sums already known."""
        frags = self._regions.setdefault(region, {})
        old = frags.get((stripe, index))
        if old is not None and old.version > version:
            raise StoreError(
                wire.E_BAD_REQUEST,
                f"fragment {region}/{stripe}/{index} holds version {old.version}, "
                f"newer than the {version} written",
            )
        growth = len(data) - (len(old.data) if old is not None else 0)
        if growth > 0 and self.used + growth > self.capacity:
            if not frags:
                del self._regions[region]
            raise StoreError(
                wire.E_NO_SPACE,
                f"node is full: {self.used} of {self.capacity} bytes used, "
                f"{len(data)} more asked; add nodes or free regions",
            )
        frag = Fragment(data, version, crcs, length)
        frags[(stripe, index)] = frag
        self.used += growth
        self._notify("put", region, stripe, index, frag)

    def get(self, region: str, stripe: int, index: int, offset: int, length: int) -> ReadResult:
        frag = self._regions.get(region, {}).get((stripe, index))
        if frag is None:
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
        return ReadResult(frag.version, size, first, crcs, data)

    def check_epoch(self, region: str, epoch: int) -> None:
        newest = self.epochs.get(region, 0)
        if epoch < newest:
            raise StoreError(
                wire.E_FENCED,
                f"region {region}: a writer of epoch {newest} took over; this writer's "
                f"epoch {epoch} is fenced off",
            )

    def fence(self, region: str, epoch: int) -> int:
        """Raise the region's epoch; returns the epoch now in force."""
        self.check_epoch(region, epoch)
        if epoch > self.epochs.get(region, 0):
            self.epochs[region] = epoch
            for on_fence in self.fence_listeners:
                on_fence(region, epoch)
        return self.epochs.get(region, 0)

    def delete(self, region: str, from_stripe: int = 0, epoch: int = 0) -> int:
        if epoch:
            self.check_epoch(region, epoch)
        elif from_stripe == 0:
            self.epochs.pop(region, None)  # the region itself is gone
        frags = self._regions.get(region)
        if not frags:
            return 0
        doomed = [key for key in frags if key[0] >= from_stripe]
        for key in doomed:
            self.used -= len(frags.pop(key).data)
            self._notify("delete", region, key[0], key[1], None)
        if not frags:
            del self._regions[region]
        return len(doomed)

    def entries(self, region: str = "") -> Iterator[tuple[str, int, int, int, int]]:
        regions = [region] if region else sorted(self._regions)
        for rid in regions:
            for (stripe, index), frag in sorted(self._regions.get(rid, {}).items()):
                yield rid, stripe, index, frag.version, frag.length

    def corrupt(self, region: str, stripe: int, index: int, mode: str, offset: int) -> None:
        frag = self._regions.get(region, {}).get((stripe, index))
        if frag is None:
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
        self._notify("put", region, stripe, index, frag)

    def stats(self) -> dict[str, int]:
        return {
            "capacity": self.capacity,
            "used": self.used,
            "fragments": len(self),
            "regions": len(self._regions),
        }
