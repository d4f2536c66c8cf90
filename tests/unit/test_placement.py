from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecmem.errors import NotEnoughNodesError
from ecmem.placement import Candidate, place, place_slabs


@st.composite
def clusters(draw: st.DrawFn) -> list[Candidate]:
    n = draw(st.integers(1, 24))
    domains = draw(st.integers(1, n))
    return [
        Candidate(
            f"n{i}",
            f"d{draw(st.integers(0, domains - 1))}",
            draw(st.sampled_from([0, 10, 100, 1000, 10**6])),
        )
        for i in range(n)
    ]


@settings(max_examples=400, deadline=None)
@given(clusters(), st.integers(1, 16), st.sampled_from([0, 10, 100, 1000]), st.integers(0, 2**32))
def test_placement_rules(cands: list[Candidate], width: int, need: int, seed: int) -> None:
    eligible = [c for c in cands if c.free >= need]
    if len(eligible) < width:
        with pytest.raises(NotEnoughNodesError):
            place(cands, width, need, random.Random(seed))
        return
    chosen = place(cands, width, need, random.Random(seed))
    by_id = {c.id: c for c in cands}
    assert len(chosen) == width
    assert len(set(chosen)) == width, "nodes must be distinct"
    assert all(by_id[i].free >= need for i in chosen), "full nodes are skipped"
    # Failure domains: as many distinct as possible, none used more than the even share
    # allows given how many eligible nodes each domain has.
    domains = Counter(c.domain for c in eligible)
    used = Counter(by_id[i].domain for i in chosen)
    assert len(used) == min(width, len(domains))
    level = _water_level(sorted(domains.values()), width)
    assert max(used.values()) <= level


def _water_level(capacities: list[int], width: int) -> int:
    """The least per-domain maximum that fits ``width`` fragments."""
    for level in range(1, width + 1):
        if sum(min(c, level) for c in capacities) >= width:
            return level
    return width


@settings(max_examples=100, deadline=None)
@given(clusters(), st.integers(0, 2**32))
def test_deterministic(cands: list[Candidate], seed: int) -> None:
    width = min(3, len(cands))
    a = place(cands, width, 0, random.Random(seed))
    b = place(list(reversed(cands)), width, 0, random.Random(seed))
    assert a == b, "placement depends on the inputs, not their order"


def test_distinct_domains_when_enough() -> None:
    cands = [Candidate(f"n{i}", f"rack{i % 6}", 10**9) for i in range(18)]
    for seed in range(50):
        chosen = place(cands, 6, 1, random.Random(seed))
        assert len({int(c[1:]) % 6 for c in chosen}) == 6


def test_balanced_by_free_capacity() -> None:
    cands = [Candidate(f"n{i}", f"n{i}", 10**9 if i < 4 else 10**6) for i in range(8)]
    counts: Counter[str] = Counter()
    for seed in range(400):
        counts.update(place(cands, 2, 1, random.Random(seed)))
    roomy = sum(counts[f"n{i}"] for i in range(4))
    tight = sum(counts[f"n{i}"] for i in range(4, 8))
    assert roomy > 2 * tight


def test_place_slabs_spreads_and_charges() -> None:
    cands = [Candidate(f"n{i}", f"n{i}", 100) for i in range(8)]
    slabs = place_slabs(cands, 8, 6, 10, random.Random(1))
    use = Counter(n for s in slabs for n in s)
    assert max(use.values()) - min(use.values()) <= 3
    with pytest.raises(NotEnoughNodesError):
        place_slabs(cands, 20, 6, 10, random.Random(1))  # 8 nodes * 100 bytes run out


def test_error_names_full_nodes() -> None:
    cands = [Candidate("a", "a", 0), Candidate("b", "b", 100)]
    with pytest.raises(NotEnoughNodesError) as err:
        place(cands, 2, 50, random.Random(0))
    assert "a" in str(err.value) and "full" in str(err.value)
    assert math.isfinite(1.0)
