"""Where a region's bytes live: slabs, stripes and fragments, as pure arithmetic.

A region's address space is cut into stripes of ``k * chunk`` bytes; stripe
``s`` is encoded into ``width`` fragments stored under key (region id, s, i).
Consecutive ``slab_stripes`` stripes form a slab, which has one placement.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from .errors import ConfigError
from .policy import ECPolicy, ReplicationPolicy, parse_policy

KiB = 1024
MiB = 1024 * 1024
# Measured on the 2-core development machine (see README, "Choosing sizes").
DEFAULT_STRIPE = 4 * MiB
DEFAULT_SLAB = 64 * MiB
MIN_CHUNK = 4 * KiB
PARITY_ALIGN = 64
MAX_CHUNK = 16 * MiB


@dataclass(frozen=True)
class Piece:
    """Part of an I/O that falls in one stripe."""

    stripe: int
    start: int  # offset within the stripe's data
    length: int
    pos: int  # offset within the caller's buffer


@dataclass(frozen=True)
class Layout:
    policy: ECPolicy | ReplicationPolicy
    chunk: int
    slab_stripes: int

    @classmethod
    def of(cls, policy: str, chunk: int, slab_stripes: int) -> Layout:
        return _layout(policy, chunk, slab_stripes)

    @property
    def stripe_data(self) -> int:
        return self.policy.stripe_data(self.chunk)

    @property
    def slab_size(self) -> int:
        return self.stripe_data * self.slab_stripes

    @property
    def fragment_size(self) -> int:
        return self.policy.header + self.chunk

    @property
    def slab_fragment_bytes(self) -> int:
        """RAM one node gives to one slab when every stripe of it is written."""
        return self.fragment_size * self.slab_stripes

    def stored_lengths(self, valid: int) -> list[int]:
        """Bytes of each fragment worth keeping when only the first ``valid`` bytes of a
        stripe may be non-zero: the codes are linear, so parity is zero wherever every
        data fragment is."""
        pol = self.policy
        if isinstance(pol, ReplicationPolicy):
            return [valid] * pol.copies
        chunk, header = self.chunk, pol.header
        data = [header + min(chunk, max(0, valid - j * chunk)) for j in range(pol.data)]
        # Codes work on words (16 bits for liberasurecode_rs_vand): round parity up.
        parity = header + min(chunk, -(-valid // PARITY_ALIGN) * PARITY_ALIGN)
        return data + [parity] * pol.parity

    def slab_of(self, stripe: int) -> int:
        return stripe // self.slab_stripes

    def stripes_for(self, size: int) -> int:
        return -(-size // self.stripe_data)

    def slabs_for(self, size: int) -> int:
        return -(-size // self.slab_size)

    def slabs_of(self, offset: int, end: int) -> range:
        """The slabs bytes [offset, end) fall in."""
        return range(offset // self.slab_size, self.slabs_for(end))

    def pieces(self, offset: int, length: int) -> Iterator[Piece]:
        sd = self.stripe_data
        pos = 0
        while pos < length:
            stripe, start = divmod(offset + pos, sd)
            n = min(sd - start, length - pos)
            yield Piece(stripe, start, n, pos)
            pos += n

    def data_ranges(
        self, stripe: int, start: int, length: int
    ) -> Iterator[tuple[int, int, int, int]]:
        """(fragment index, offset in fragment, length, offset in piece) for a healthy read."""
        if isinstance(self.policy, ReplicationPolicy):
            yield stripe % self.policy.copies, start, length, 0
            return
        chunk, header = self.chunk, self.policy.header
        pos = 0
        while pos < length:
            index, within = divmod(start + pos, chunk)
            n = min(chunk - within, length - pos)
            yield index, header + within, n, pos
            pos += n


def column(
    layout: Layout, stripe: int, start: int, length: int, page: int
) -> tuple[list[tuple[int, int, int, int]], int, int]:
    """The data ranges of bytes [start, start+length) of a stripe's data, and the
    column they lie in: bytes [lo, hi) of every fragment after its header, rounded
    out to ``page`` (the codes work column by column)."""
    ranges = list(layout.data_ranges(stripe, start, length))
    header = layout.policy.header
    lo = min(off - header for _, off, _, _ in ranges) // page * page
    hi = -(-max(off - header + n for _, off, n, _ in ranges) // page) * page
    return ranges, lo, min(layout.chunk, hi)


@lru_cache(maxsize=256)
def _layout(policy: str, chunk: int, slab_stripes: int) -> Layout:
    return Layout(parse_policy(policy), chunk, slab_stripes)


def default_geometry(policy: ECPolicy | ReplicationPolicy) -> tuple[int, int]:
    """(chunk, stripes per slab) giving about DEFAULT_STRIPE-byte stripes."""
    k = policy.k
    chunk = max(MIN_CHUNK, (DEFAULT_STRIPE // k) // MIN_CHUNK * MIN_CHUNK)
    stripe = policy.stripe_data(chunk)
    return chunk, max(1, DEFAULT_SLAB // stripe)


def check_chunk(chunk: int) -> int:
    if chunk < MIN_CHUNK or chunk > MAX_CHUNK or chunk % MIN_CHUNK:
        raise ConfigError(
            f"fragment chunk of {chunk} bytes is not allowed: use a multiple of {MIN_CHUNK} "
            f"between {MIN_CHUNK} and {MAX_CHUNK}"
        )
    return chunk
