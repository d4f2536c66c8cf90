"""A node's records of what it holds: fragments, a region's state, a read's result."""

from __future__ import annotations

from dataclasses import dataclass, field

from .patches import PatchBook

Key = tuple[int, int]  # (stripe, fragment index) within a region


@dataclass(slots=True)
class Fragment:
    """A fragment of ``length`` bytes; only ``data``, a prefix, is kept: the rest is zeros.

    ``write`` describes the write it belongs to: (first stripe, last stripe, end byte).
    """

    data: bytes | bytearray
    version: int
    crcs: bytes
    length: int
    write: tuple[int, int, int] = (-1, -1, 0)


@dataclass
class RegionState:
    committed: dict[Key, Fragment] = field(default_factory=dict)
    staged: dict[Key, list[Fragment]] = field(default_factory=dict)  # oldest first
    lac: int = 0  # the highest version this node knows to be committed
    base: int = 0  # of writes from epochs before lac's, those up to base are committed
    epoch: int = 0  # writers older than this are fenced off
    patches: PatchBook = field(default_factory=PatchBook)

    def empty(self) -> bool:
        return not (self.committed or self.staged or self.lac or self.epoch or self.patches.size)


@dataclass(frozen=True, slots=True)
class ReadResult:
    version: int
    fragment_len: int
    first_page: int
    crcs: bytes
    data: memoryview | tuple[memoryview, ...]
    write: tuple[int, int, int] = (-1, -1, 0)
    pending: int = 0  # patches of the stripe newer than this version not laid over it
    patched: int = 0  # the newest patch laid over (``write`` is then its write's)
