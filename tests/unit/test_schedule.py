"""Fault schedules: replayable from their seed, never more hosts down than allowed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chaos.schedule import CORRUPT, KILL, PAUSE, TAKES_DOWN, Fault, generate, most_down

HOSTS = [f"host-{i}" for i in range(7)]


@given(st.integers(0, 2**32), st.integers(1, 3), st.floats(5, 120))
def test_same_seed_same_schedule_and_bounded(seed: int, max_down: int, secs: float) -> None:
    a = generate(seed, HOSTS, secs, max_down, [KILL, PAUSE, CORRUPT])
    assert a == generate(seed, HOSTS, secs, max_down, [KILL, PAUSE, CORRUPT])
    assert most_down(a) <= max_down
    assert all(0 <= f.at < secs and f.until <= secs + 1e-9 for f in a)
    assert all(f.host in HOSTS for f in a)


def test_different_seeds_differ() -> None:
    assert generate(1, HOSTS, 60, 2) != generate(2, HOSTS, 60, 2)


def test_most_down_counts_overlaps() -> None:
    faults = [Fault(0, KILL, "a", 5), Fault(1, PAUSE, "b", 1), Fault(4, KILL, "c", 3)]
    assert most_down(faults) == 2
    assert most_down([Fault(0, CORRUPT, "a", 0)]) == 0
    assert set(TAKES_DOWN) == {"kill", "pause", "isolate"}


@given(st.integers(0, 2**32), st.integers(1, 3), st.floats(0, 20))
def test_a_killed_host_counts_as_out_until_healed(seed: int, max_down: int, heal: float) -> None:
    """With ``heal``, killed hosts count as out that much longer (their data is being
    rebuilt): never more than max_down hosts out or unhealed at once."""
    faults = generate(seed, HOSTS, 120, max_down, [KILL, PAUSE], heal=heal)
    stretched = [
        Fault(f.at, f.kind, f.host, f.duration + (heal if f.kind == KILL else 0)) for f in faults
    ]
    assert most_down(stretched) <= max_down
    if heal >= 10:
        assert len(faults) <= len(generate(seed, HOSTS, 120, max_down, [KILL, PAUSE]))
