"""Stripe range sets, against a model of plain sets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ecmem import extents

span = st.tuples(st.integers(0, 60), st.integers(0, 12)).map(lambda t: (t[0], t[0] + t[1]))
spans = st.lists(span, max_size=8)


def model(ranges: list[tuple[int, int]]) -> set[int]:
    return {s for f, e in ranges for s in range(f, e)}


def canonical(ranges: extents.Ranges) -> bool:
    return all(f < e for f, e in ranges) and all(
        a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False)
    )


@given(spans, spans, span, st.integers(0, 80))
def test_operations_match_sets(a: list, b: list, one: tuple, stripe: int) -> None:  # type: ignore[type-arg]
    ra, rb = extents.normal(a), extents.normal(b)
    assert canonical(ra) and model(ra) == model(a)
    f, e = one
    for got, want in [
        (extents.add(ra, f, e), model(a) | set(range(f, e))),
        (extents.remove(ra, f, e), model(a) - set(range(f, e))),
        (extents.union(ra, rb), model(a) | model(b)),
        (extents.minus(ra, rb), model(a) - model(b)),
        (extents.intersect(ra, rb), model(a) & model(b)),
        (extents.within(ra, f, e), model(a) & set(range(f, e))),
    ]:
        assert canonical(extents.normal(got)) and model(got) == want
    assert extents.contains(ra, stripe) == (stripe in model(a))
    assert extents.covers(ra, f, e) == set(range(f, e)).issubset(model(a))
    assert extents.count(ra) == len(model(a))
    assert list(extents.stripes(ra)) == sorted(model(a))
    assert extents.of(model(a)) == ra


def test_describe() -> None:
    assert extents.describe([(0, 1), (3, 6)]) == "0, 3-5"
    assert extents.describe([(i * 3, i * 3 + 1) for i in range(10)], 2) == "0, 3 and 8 more ranges"
