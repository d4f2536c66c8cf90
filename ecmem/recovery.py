"""The decisions a new writer makes when it takes a region over, as pure functions.

Fencing: how many nodes of each slab must accept the new epoch so that an old writer
can never store a write again. Recovery: which of the old writer's staged writes to
keep (an ordered prefix of whole writes) and which to drop. Written stripes: what the
region records as written once the writes are recorded or recovered. docs/protocol.md
argues why each rule keeps the guarantees; tests/unit/test_recovery.py and
test_written.py hold their tables of cases.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from . import extents, wire

Pending = list[tuple[int, int, int]]  # (first stripe, end, version of the write)
Extent = tuple[int, int, int]  # a write's first stripe, last stripe, end byte


def next_after(prev: int, version: int) -> bool:
    """Is ``version`` the write right after ``prev`` (same epoch, or a new epoch's first)?"""
    e1, e2 = wire.epoch_of(prev), wire.epoch_of(version)
    seq = version & ((1 << wire.SEQ_BITS) - 1)
    return version == prev + 1 if e1 == e2 else e2 > e1 and seq == 1


def fence_quorum(width: int, min_durable: int) -> int:
    """Nodes of a slab a new writer must fence: an old writer, which needs
    ``min_durable`` nodes of a stripe for any write, must not find that many unfenced."""
    return width - min_durable + 1


def unfenced_slabs(slabs: list[list[str]], fenced: set[str], quorum: int) -> list[int]:
    """Slabs (by index) with fewer than ``quorum`` of their nodes fenced."""
    return [i for i, nodes in enumerate(slabs) if sum(1 for n in nodes if n in fenced) < quorum]


@dataclass(frozen=True)
class Staged:
    """One staged fragment a node listed: of which write, stripe and fragment index."""

    version: int
    stripe: int
    index: int
    extent: Extent


@dataclass
class Outcome:
    kept: int  # the last version kept (the commit point recovery commits)
    size: int  # the region's size once the kept writes count
    writes: dict[int, Extent] = field(default_factory=dict)  # staged writes seen
    dropped: list[int] = field(default_factory=list)

    def wrote(self) -> extents.Ranges:
        """Stripes of the writes recovery keeps."""
        return extents.normal(
            (f, last + 1) for v, (f, last, _) in self.writes.items() if v <= self.kept
        )


def choose_kept(
    lac: int, size: int, staged: Iterable[Staged], k: int, patches: Iterable[Staged] = ()
) -> Outcome:
    """Keep, in version order from the newest commit point any node knew (``lac``),
    each staged write that follows the last one kept and whose every stripe has at
    least ``k`` fragments staged, or a page patch on some node (one copy holds all its
    bytes); stop at the first that does not. The rest is dropped: so the region holds
    a prefix of the writes, and every acknowledged one is in it."""
    writes: dict[int, Extent] = {}
    held: dict[int, dict[int, set[int]]] = {}  # version -> stripe -> fragment indexes
    patched: dict[int, set[int]] = {}  # version -> stripes some node holds a patch of
    for s in staged:
        if s.version <= lac:
            continue
        writes[s.version] = s.extent
        held.setdefault(s.version, {}).setdefault(s.stripe, set()).add(s.index)
    for s in patches:
        if s.version > lac:
            writes[s.version] = s.extent
            patched.setdefault(s.version, set()).add(s.stripe)
    kept = lac
    for version in sorted(writes):
        first, last, end = writes[version]
        whole = all(
            st in patched.get(version, ()) or len(held.get(version, {}).get(st, ())) >= k
            for st in range(first, last + 1)
        )
        if not next_after(kept, version) or not whole:
            break
        kept, size = version, max(size, end)
    return Outcome(kept, size, writes, sorted(v for v in writes if v > kept))


def record_writes(
    written: extents.Ranges,
    lost: extents.Ranges,
    pending: Pending,
    todo: Pending,
    confirmed: int,
) -> tuple[extents.Ranges, Pending, Pending]:
    """A region's (written, pending) once the staged writes ``todo`` are recorded, and
    which recorded-lost stripes each of them rewrites (``unlost``).

    Stripes they write for the first time are also kept in ``pending`` with the
    write's version until a commit round has covered it (``confirmed``): meanwhile a
    reader that finds no committed copy but a staged one reads the stripe as the hole it
    still is, and a writer that dies first may have its write dropped by the next one's
    recovery, which then takes those stripes back out (settle_written). A lost stripe
    stays lost until a commit round covers its rewrite: recovery could drop that."""
    fresh = [(f2, e2, v) for f, e, v in todo for f2, e2 in extents.minus([(f, e)], written)]
    unlost = [(f2, e2, v) for f, e, v in todo for f2, e2 in extents.within(lost, f, e)]
    ranges = extents.normal((f, e) for f, e, _ in todo)
    keep = [p for p in pending if p[2] > confirmed]
    return extents.union(written, ranges), keep + fresh, unlost


def settle_written(
    written: extents.Ranges, pending: Pending, dropped: set[int], wrote: extents.Ranges
) -> extents.Ranges:
    """``written`` after a recovery that found the writes ``dropped`` staged and dropped
    them, and kept writes of stripes ``wrote``: stripes first recorded by a dropped
    write were never committed, and are holes again unless a kept write covers them.
    A pending write recovery found no staged copy of was committed (or lost with its
    nodes): its stripes stay written, so that lost data reads as lost, never zeros."""
    undo = extents.normal((f, e) for f, e, v in pending if v in dropped)
    confirmed = extents.normal((f, e) for f, e, v in pending if v not in dropped)
    return extents.union(extents.union(extents.minus(written, undo), confirmed), wrote)
