"""The page log's pure parts (docs/protocol.md, "The page log"): which writes go as
page patches, which nodes hold a patch, and laying patches over decoded bytes.

A patch replaces bytes of one data fragment of a stripe as one write version. It is
sent to that fragment's node and to the stripe's M parity nodes: M+1 copies, so an
acknowledged patch survives any M lost nodes, as a whole-stripe write does. The
fragment's node lays its committed patches over the fragment when it is read; a read
that decodes the fragment around that node lays them itself, from any parity node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from . import wire
from .layout import Layout
from .policy import ECPolicy


@dataclass(frozen=True)
class FoldRule:
    """When a writer folds a stripe (rewrites it whole, its patches laid over): once it
    holds ``after`` patches and their bytes reach 1/``share`` of the stripe's data, or
    it holds ``most`` patches. A fold moves about 2.5 stripes of bytes, so a big stripe
    gathers more patches before its fold is worth it; a small one still ``after``."""

    after: int = 64
    share: int = 4
    most: int = 1024

    def due(self, count: int, nbytes: int, stripe_data: int) -> bool:
        return count >= self.after and (nbytes * self.share >= stripe_data or count >= self.most)


FOLD = FoldRule()
# Bytes of patches a writer may leave unfolded in a region: past it, it folds the
# stripes holding most of them (down to half) before it takes more page writes.
UNFOLDED_MAX = 64 << 20

PatchEntry = tuple[int, int, int, bytes]  # version, fragment index, byte in fragment, bytes


def patch_target(layout: Layout, start: int, length: int) -> tuple[int, int] | None:
    """(fragment index, byte in that fragment) of a write of bytes [start, start+length)
    of a stripe's data that can go as one patch: an erasure-coded stripe, and the bytes
    inside one data fragment. None otherwise."""
    if not isinstance(layout.policy, ECPolicy) or not 0 < length <= wire.MAX_PATCH:
        return None
    index, within = divmod(start, layout.chunk)
    if within + length > layout.chunk:
        return None
    return index, layout.policy.header + within


def patchable(layout: Layout, offset: int, end: int) -> bool:
    """Could a write of region bytes [offset, end) go as a page patch?"""
    start = offset % layout.stripe_data
    return start + end - offset <= layout.stripe_data and bool(
        patch_target(layout, start, end - offset)
    )


def log_indexes(layout: Layout, index: int) -> list[int]:
    """The fragment indexes whose nodes keep a patch of data fragment ``index``."""
    pol = layout.policy
    return [index, *range(pol.k, pol.width)]


def lay_patches(
    layout: Layout, cells: bytearray, lo: int, width: int, patches: Iterable[PatchEntry]
) -> None:
    """Lay ``patches``, oldest first, over ``cells``: bytes [lo, lo+width) after the
    header of each data fragment, one fragment after another (a decoded column, or with
    lo=0 and width=chunk a decoded stripe's data)."""
    k, header = layout.policy.k, layout.policy.header
    col = header + lo
    for _, index, at, data in sorted(patches, key=lambda p: p[0]):
        if index >= k:
            continue
        a, b = max(at, col), min(at + len(data), col + width)
        if a < b:
            base = index * width - col
            cells[base + a : base + b] = data[a - at : b - at]


def complete(k: int, answered: Iterable[int]) -> bool:
    """Did the nodes that answered a patch request hold every patch of the stripe? A
    parity node holds all of them, a data node its own fragment's."""
    got = set(answered)
    return any(i >= k for i in got) or all(i in got for i in range(k))


@dataclass
class Unfolded:
    """A writer's page patches not folded yet, by stripe: (newest version, count,
    bytes), and the bytes of all of them."""

    stripes: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    total: int = 0
    stripe_data: int = 1 << 62  # the region's (set by the writer that keeps the book)

    def add(self, stripe: int, version: int, nbytes: int) -> None:
        newest, count, held = self.stripes.get(stripe, (0, 0, 0))
        self.stripes[stripe] = (max(newest, version), count + 1, held + nbytes)
        self.total += nbytes

    def folded(self, stripe: int) -> None:
        """The stripe was written whole (or as a slice): its patches went with it."""
        self.total -= self.stripes.pop(stripe, (0, 0, 0))[2]

    def forget(self, first: int, end: int = 1 << 62) -> None:
        """Stripes [first, end) were cut off or accepted as lost: their patches went."""
        for s in [s for s in self.stripes if first <= s < end]:
            self.folded(s)

    def stuck(self, stripe: int, newest: int) -> None:
        """Patches another writer left on the stripe that cannot be folded now: the
        stripe is written whole (not patched) until they are. Not counted in ``total``:
        this writer did not write them."""
        self.folded(stripe)
        self.stripes[stripe] = (newest, 0, 0)

    def newest(self, stripe: int) -> int:
        return self.stripes.get(stripe, (0, 0, 0))[0]

    def count(self, stripe: int) -> int:
        return self.stripes.get(stripe, (0, 0, 0))[1]

    def fold_first(self, stripe: int, count: int, nbytes: int, rule: FoldRule, bound: int) -> bool:
        """Must the writer fold before it sends ``count`` more patches of ``nbytes`` to
        the stripe (one of them would make a fold due)?"""
        _, had, held = self.stripes.get(stripe, (0, 0, 0))
        return rule.due(had + count, held + nbytes, self.stripe_data) or self.total >= bound

    def due(self, rule: FoldRule, bound: int) -> list[int]:
        """Stripes to fold now: those ``rule`` says and, while all of them hold ``bound``
        bytes or more, those holding most, down to 7/8 of it (a fold rewrites a whole
        stripe: a writer pauses for a few at a time)."""
        sd = self.stripe_data
        out = [s for s, (_, count, held) in self.stripes.items() if rule.due(count, held, sd)]
        left = self.total - sum(self.stripes[s][2] for s in out)
        if self.total >= bound:
            for s, (_, _, held) in sorted(self.stripes.items(), key=lambda e: -e[1][2]):
                if left <= bound - bound // 8:
                    break
                if s not in out and held:
                    out.append(s)
                    left -= held
        return sorted(out)
