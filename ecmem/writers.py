"""The writer side of a region: lease, epoch and the order of its writes.

One client at a time writes a region. It holds the region's lease in
ZooKeeper, has bumped the region's epoch with a versioned set, and has fenced
the region's nodes at that epoch, so that a writer it replaced cannot store
another byte. Every fragment it stores carries (epoch, seq) as its version.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import wire
from .errors import Fenced


@dataclass
class Writer:
    name: str
    epoch: int
    seq: int = 0
    files: int = 0  # region files open for writing through this client
    sticky: bool = False  # taken by pwrite/truncate: held until released or closed
    lost: str = ""  # why this writer may not write any more

    def next_version(self) -> int:
        self.check()
        self.seq += 1
        return (self.epoch << wire.SEQ_BITS) | self.seq

    def check(self) -> None:
        if self.lost:
            raise Fenced(self.lost)

    def fence_off(self, why: str) -> None:
        if not self.lost:
            self.lost = (
                f"region {self.name!r}: this client's writes (epoch {self.epoch}) are refused: "
                f"{why}; reopen the region to write again"
            )
