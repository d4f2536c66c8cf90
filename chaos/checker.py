"""The write checker: what a region holds after a run, against what was written.

For one region, given every write a run made (each with its order, the pages it
set, and whether it was acknowledged, failed or unknown) and the pages as read
back at the end, it verifies ecmem's write guarantees:

- prefix: the region equals the writes applied in order, each writer's (epoch's)
  up to some write at or after its last acknowledged one (a successor's recovery
  cuts its predecessor's log once): nothing acknowledged is lost, and nothing is
  applied out of order or in part;
- no stale epoch: no write of an old epoch was acknowledged when it began after a
  writer of a newer epoch had opened the region (fencing must have refused it).

Each problem found is named: a lost acknowledged write, a torn write (some of its
pages applied, others not), a write that failed yet shows, a stale-epoch write.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .history import FAIL, OK

Pages = Mapping[int, str | None]
MAX_COMBINATIONS = 100_000


@dataclass(frozen=True)
class Write:
    epoch: int
    seq: int
    pages: dict[int, str]  # page -> what the write put there
    outcome: str  # ok, fail or info
    start: float = 0.0
    end: float = float("inf")

    @property
    def order(self) -> tuple[int, int]:
        return (self.epoch, self.seq)


@dataclass(frozen=True)
class Open:
    """A writer of ``epoch`` finished opening the region (taking it over) at ``time``."""

    epoch: int
    time: float


@dataclass
class Report:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    applied_up_to: tuple[int, int] | None = None  # the prefix the region holds

    def fail(self, why: str) -> None:
        self.ok = False
        self.problems.append(why)


def check_region(
    writes: list[Write], final: Pages, opens: Sequence[Open] = (), initial: str | None = None
) -> Report:
    report = Report()
    _stale(writes, opens, final, initial, report)
    # Writes begun after a newer writer opened the region were refused (checked above).
    live = [w for w in writes if w.outcome != FAIL and not _after_takeover(w, opens)]
    candidates = sorted(live, key=lambda w: w.order)
    by_epoch: dict[int, list[Write]] = {}
    for w in candidates:
        by_epoch.setdefault(w.epoch, []).append(w)
    # Each writer's log is cut once, by its successor's recovery or by the end of the run:
    # at or after its last acknowledged write. Try every combination of cuts.
    choices: list[list[tuple[int, int] | None]] = []
    for _, mine in sorted(by_epoch.items()):
        acked = [w.order for w in mine if w.outcome == OK]
        floor = max(acked) if acked else None
        options: list[tuple[int, int] | None] = [] if floor is not None else [None]
        options += [w.order for w in mine if floor is None or w.order >= floor]
        choices.append(options)
    for cuts in itertools.islice(itertools.product(*choices), MAX_COMBINATIONS):
        ends = dict(zip(sorted(by_epoch), cuts, strict=True))
        applied = [w for w in candidates if _within(w, ends[w.epoch])]
        if _matches(applied, final, initial):
            report.applied_up_to = max((w.order for w in applied), default=None)
            return report
    floor_all = max((w.order for w in candidates if w.outcome == OK), default=None)
    _explain(writes, candidates, floor_all, final, initial, report)
    return report


def _within(w: Write, end: tuple[int, int] | None) -> bool:
    return end is not None and w.order <= end


def _after_takeover(w: Write, opens: Sequence[Open]) -> bool:
    return any(o.epoch > w.epoch and o.time < w.start for o in opens)


def _matches(applied: list[Write], final: Pages, initial: str | None) -> bool:
    want: dict[int, str | None] = {}
    for w in applied:  # in order
        want.update(w.pages)
    return all(final.get(p, initial) == want.get(p, initial) for p in set(want) | set(final))


def _explain(
    writes: list[Write],
    candidates: list[Write],
    floor: tuple[int, int] | None,
    final: Pages,
    initial: str | None,
    report: Report,
) -> None:
    """Say why no prefix fits."""
    shown: dict[int, Write] = {}
    for w in candidates:
        for p, v in w.pages.items():
            if final.get(p, initial) == v:
                shown[p] = w  # the latest write that put this value there
    for w in writes:
        if w.outcome == FAIL and any(
            final.get(p, initial) == v and shown.get(p) is None for p, v in w.pages.items()
        ):
            report.fail(f"write {w.order} failed, yet its bytes are in the region")
    for w in candidates:
        later = [x for x in candidates if x.order > w.order]
        kept = [p for p in w.pages if not any(p in x.pages for x in later)]
        seen = [p for p in kept if final.get(p, initial) == w.pages[p]]
        if w.outcome == OK and len(seen) < len(kept):
            lost = sorted(set(kept) - set(seen))
            report.fail(f"acknowledged write {w.order} is lost on pages {lost[:8]}")
        elif seen and len(seen) < len(kept):
            missing = sorted(set(kept) - set(seen))
            report.fail(f"write {w.order} is torn: applied on pages {seen[:8]}, not {missing[:8]}")
    if report.ok:
        # Name the pages that differ from every acknowledged write applied and no more.
        want: dict[int, str | None] = {}
        who: dict[int, tuple[int, int]] = {}
        for w in candidates:
            if w.outcome == OK:
                want.update(w.pages)
                who.update({p: w.order for p in w.pages})
        wrong = [
            p
            for p in sorted(set(want) | set(final))
            if final.get(p, initial) != want.get(p, initial)
        ]
        holders: dict[str | None, object] = {
            v: w.order for w in candidates for v in w.pages.values()
        }
        detail = ", ".join(
            f"page {p}: holds {holders.get(final.get(p, initial), final.get(p, initial))}, "
            f"last acknowledged {who.get(p)}"
            for p in wrong[:4]
        )
        report.fail(
            f"the region is not the writes applied in order up to any point at or after "
            f"the last acknowledged write {floor} ({detail})"
        )


def _stale(
    writes: list[Write], opens: Sequence[Open], final: Pages, initial: str | None, report: Report
) -> None:
    """A write begun after a newer epoch's writer opened the region must be refused:
    neither acknowledged nor visible."""
    for w in writes:
        newer = [o for o in opens if o.epoch > w.epoch and o.time < w.start]
        if not newer:
            continue
        o = min(newer, key=lambda o: o.time)
        when = (
            f"it began at {w.start:.3f}, after a writer of epoch {o.epoch} opened at {o.time:.3f}"
        )
        if w.outcome == OK:
            report.fail(f"stale-epoch write {w.order} was acknowledged: {when}")
        elif any(final.get(p, initial) == v for p, v in w.pages.items()):
            report.fail(f"stale-epoch write {w.order} is in the region: {when}")
