"""The leader's tallies: damage and health kept between passes, looked at again only for
what changed, always equal to working everything out afresh."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from ecmem.damage import DamageTally, find_damage
from ecmem.health import HealthTally, assess, region_totals, summarize
from ecmem.meta.model import NodeInfo, RegionMeta

NODES = [f"n{i}" for i in range(5)]
REGIONS = [f"r{i}" for i in range(6)]
GRACE = 30.0

holder = st.one_of(st.just(("", "")), st.tuples(st.sampled_from(NODES), st.sampled_from("ab")))
placement = st.lists(holder, min_size=3, max_size=3)
record = st.builds(
    lambda name, slabs, partial: RegionMeta(
        name,
        f"{abs(hash(name)) % (1 << 60):016x}",
        "ec:2+1",
        len(slabs) << 16,
        4096,
        4,
        slabs=slabs,
        partial=partial,
    ),
    st.sampled_from(REGIONS),
    st.lists(placement, min_size=0, max_size=2),
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2)), max_size=2),
)
step = st.one_of(
    st.tuples(st.just("put"), record),
    st.tuples(st.just("remove"), st.sampled_from(REGIONS)),
    st.tuples(st.just("node"), st.sampled_from(NODES), st.sampled_from(["a", "b", None])),
    st.tuples(st.just("drain"), st.sampled_from(NODES)),
    st.tuples(st.just("force"), st.sampled_from(NODES)),
    st.tuples(st.just("wait"), st.floats(0, 40)),
)


class World:
    def __init__(self) -> None:
        self.metas: dict[str, RegionMeta] = {}
        self.live = {
            n: NodeInfo(n, f"h:{i}", 1 << 30, incarnation="a") for i, n in enumerate(NODES)
        }
        self.since: dict[str, float] = {}
        self.now = 1000.0
        self.drains: set[str] = set()
        self.forced: set[str] = set()

    def apply(self, s: tuple[object, ...]) -> set[str]:
        """Do one step; returns the regions whose record changed."""
        kind = s[0]
        if kind == "put":
            meta = s[1]
            assert isinstance(meta, RegionMeta)
            self.metas[meta.name] = meta
            return {meta.name}
        if kind == "remove":
            self.metas.pop(str(s[1]), None)
            return {str(s[1])}
        if kind == "node":
            n, inc = str(s[1]), s[2]
            if inc is None:
                self.live.pop(n, None)
                self.since.setdefault(n, self.now)
            else:
                self.live[n] = replace(
                    self.live.get(n) or NodeInfo(n, "h", 1), incarnation=str(inc)
                )
                self.since.pop(n, None)
        elif kind == "drain":
            self.drains ^= {str(s[1])}
        elif kind == "force":
            self.forced ^= {str(s[1])}
        elif kind == "wait":
            assert isinstance(s[1], float)
            self.now += s[1]
        return set()


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=30))
def test_the_damage_tally_equals_a_full_survey(steps: list[tuple[object, ...]]) -> None:
    w, tally = World(), DamageTally()
    for s in steps:
        changed = w.apply(s)
        args = (w.live, w.since, w.now, GRACE, w.drains, w.forced)
        got = tally.update(w.metas, changed, *args)
        want = find_damage(sorted(w.metas.values(), key=lambda m: m.name), *args)
        assert got.slots == want.slots
        assert got.waiting == want.waiting


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=30))
def test_the_health_tally_equals_a_full_assessment(steps: list[tuple[object, ...]]) -> None:
    w, tally = World(), HealthTally()
    for s in steps:
        changed = w.apply(s)
        nodes = {**{n: NodeInfo(n, "h", 1, state="down") for n in NODES}, **w.live}
        per, holding = tally.update(w.metas, changed, w.live)
        got = summarize(nodes, region_totals(per, holding))
        want, _ = assess(nodes, sorted(w.metas.values(), key=lambda m: m.name))
        assert got == want


def test_a_pass_with_nothing_changed_does_no_work() -> None:
    w, tally = World(), HealthTally()
    w.apply(("put", RegionMeta("r0", "0" * 16, "ec:2+1", 1, 4096, 4, slabs=[[("n0", "a")] * 3])))
    tally.update(w.metas, {"r0"}, w.live)
    assert tally.moved
    tally.update(w.metas, set(), w.live)
    assert not tally.moved
    w.apply(("node", "n0", None))
    per, holding = tally.update(w.metas, set(), w.live)
    assert tally.moved and per[0].state == "unavailable" and holding == {"n0"}


def test_summary_details_are_capped_and_round_trip() -> None:
    live = {"n0": NodeInfo("n0", "h", 1, incarnation="a")}
    metas = [
        RegionMeta(
            f"r{i:03d}",
            "i",
            "ec:2+1",
            1 << 16,
            4096,
            4,
            slabs=[[("n0", "a"), ("", ""), ("n0", "a")]],
        )
        for i in range(300)
    ]
    tally = HealthTally()
    per, holding = tally.update({m.name: m for m in metas}, [m.name for m in metas], live)
    totals = region_totals(per, holding, detail_cap=10)
    (check,) = totals.checks
    assert check.code == "REGION_DEGRADED" and len(check.detail) == 11
    assert check.detail[0].startswith("r000:") and check.detail[-1] == "... and 290 more"
    assert type(totals).from_dict(totals.to_dict()) == totals


def test_facets_follow_the_changes() -> None:
    from coordinator.survey import Facets

    f = Facets()
    trash = RegionMeta(".ecmem-trash/00ab", "0" * 16, "ec:2+1", 0, 4096, 4)
    lost = RegionMeta("l", "0" * 16, "ec:2+1", 1, 4096, 4, slabs=[[("n1", "a")] * 3], lost=[(0, 1)])
    plain = RegionMeta("p", "0" * 16, "ec:2+1", 1, 4096, 4, slabs=[[("n2", "a")] * 3])
    metas = {m.name: m for m in (trash, lost, plain)}
    f.update(metas, metas)
    assert f.trash == {trash.name} and f.lost == {"l"} and f.holders() == {"n1", "n2"}
    metas["l"] = RegionMeta("l", "0" * 16, "ec:2+1", 1, 4096, 4, slabs=[[("n3", "a")] * 3])
    del metas["p"], metas[trash.name]
    f.update(metas, ["l", "p", trash.name])
    assert f.trash == set() and f.lost == set() and f.holders() == {"n3"}
