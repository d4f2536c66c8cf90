"""Sets of stripes kept as sorted, merged ranges ``(first, end)`` (end exclusive).

A region records which of its stripes were written and which are lost this way: a
sequential writer's whole history is one range, so the record stays a few bytes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

Ranges = list[tuple[int, int]]
_MAX = 1 << 62


def normal(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """Sorted, merged, without empty ranges."""
    out: Ranges = []
    for first, end in sorted((int(f), int(e)) for f, e in ranges if int(e) > int(f)):
        if out and first <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((first, end))
    return out


def add(ranges: Ranges, first: int, end: int) -> Ranges:
    return normal([*ranges, (first, end)])


def remove(ranges: Ranges, first: int, end: int) -> Ranges:
    out: Ranges = []
    for f, e in ranges:
        if e <= first or f >= end:
            out.append((f, e))
            continue
        if f < first:
            out.append((f, first))
        if e > end:
            out.append((end, e))
    return out


def union(a: Ranges, b: Ranges) -> Ranges:
    return normal([*a, *b])


def minus(a: Ranges, b: Ranges) -> Ranges:
    for first, end in b:
        a = remove(a, first, end)
    return a


def intersect(a: Ranges, b: Ranges) -> Ranges:
    return minus(a, minus(a, b))


def contains(ranges: Ranges, stripe: int) -> bool:
    i = bisect.bisect_right(ranges, (stripe, _MAX)) - 1
    return i >= 0 and ranges[i][0] <= stripe < ranges[i][1]


def covers(ranges: Ranges, first: int, end: int) -> bool:
    """Is every stripe of [first, end) in ``ranges``?"""
    return end <= first or any(f <= first and end <= e for f, e in ranges)


def covers_all(ranges: Ranges, others: Ranges) -> bool:
    return all(covers(ranges, f, e) for f, e in others)


def within(ranges: Ranges, first: int, end: int) -> Ranges:
    """The part of ``ranges`` inside [first, end)."""
    return [(max(f, first), min(e, end)) for f, e in ranges if f < end and e > first]


def stripes(ranges: Ranges) -> Iterator[int]:
    for f, e in ranges:
        yield from range(f, e)


def count(ranges: Ranges) -> int:
    return sum(e - f for f, e in ranges)


def of(stripes_: Iterable[int]) -> Ranges:
    return normal((s, s + 1) for s in stripes_)


def describe(ranges: Ranges, limit: int = 8) -> str:
    """'3, 7-9, 12' (stripes, inclusive ranges), cut after ``limit`` ranges."""
    parts = [str(f) if e == f + 1 else f"{f}-{e - 1}" for f, e in ranges[:limit]]
    more = f" and {len(ranges) - limit} more ranges" if len(ranges) > limit else ""
    return ", ".join(parts) + more
