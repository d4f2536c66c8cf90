"""find_damage: which slots the rebuilder must fill, as a pure function."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ecmem.damage import DRAINING, LOST, PARTIAL, REPLACED, VACANT, find_damage
from ecmem.meta.model import NodeInfo, RegionMeta

NODES = [f"n{i}" for i in range(8)]


def node(n: str, inc: str = "a") -> NodeInfo:
    return NodeInfo(n, f"127.0.0.1:{1000 + NODES.index(n)}", 1 << 30, incarnation=inc)


def region(slabs: list[list[tuple[str, str]]], partial: list[tuple[int, int]] = ()) -> RegionMeta:  # type: ignore[assignment]
    return RegionMeta("r", "0" * 16, "ec:2+1", 1 << 20, 4096, 4, slabs=slabs, partial=list(partial))


def test_each_reason() -> None:
    meta = region(
        [[("n0", "a"), ("", ""), ("n2", "a")], [("n3", "a"), ("n4", "old"), ("n5", "a")]],
        partial=[(0, 2)],
    )
    live = {n: node(n) for n in ("n0", "n2", "n3", "n4")}
    live["n4"] = node("n4", "new")
    dmg = find_damage([meta], live, {"n5": 0.0}, 100.0, 30.0, draining=["n3"])
    got = {(s.slab, s.index): s.reason for s in dmg.slots}
    assert got == {
        (0, 1): VACANT,
        (0, 2): PARTIAL,
        (1, 0): DRAINING,
        (1, 1): REPLACED,
        (1, 2): LOST,
    }
    assert dmg.waiting == {}


def test_grace_delays_and_force_skips_it() -> None:
    meta = region([[("n0", "a"), ("n1", "a"), ("n2", "a")]])
    live = {n: node(n) for n in ("n0", "n1")}
    dmg = find_damage([meta], live, {"n2": 90.0}, 100.0, 30.0)
    assert dmg.slots == [] and dmg.waiting == {"n2": 20.0}
    forced = find_damage([meta], live, {"n2": 90.0}, 100.0, 30.0, forced=["n2"])
    assert [s.reason for s in forced.slots] == [LOST]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(NODES + [""]), min_size=3, max_size=3), min_size=1, max_size=6
    ),
    st.sets(st.sampled_from(NODES)),
    st.dictionaries(st.sampled_from(NODES), st.floats(0, 100)),
    st.sets(st.sampled_from(NODES)),
)
def test_healthy_slots_are_never_flagged_and_bad_ones_always_are(
    slabs: list[list[str]], up: set[str], since: dict[str, float], drains: set[str]
) -> None:
    meta = region([[(n, "a" if n else "") for n in slab] for slab in slabs])
    live = {n: node(n) for n in up}
    dmg = find_damage([meta], live, since, 100.0, 30.0, draining=drains)
    flagged = {(s.slab, s.index) for s in dmg.slots}
    for si, slab in enumerate(slabs):
        for i, n in enumerate(slab):
            gone_long = n and n not in up and 100.0 - since.get(n, 100.0) >= 30.0
            bad = not n or gone_long or (n in up and n in drains)
            assert ((si, i) in flagged) == bool(bad), (si, i, n)
    assert set(dmg.waiting) <= {n for slab in slabs for n in slab if n and n not in up}
