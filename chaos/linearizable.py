"""Linearizability of a register history: the Wing–Gong search with Lowe's cache.

Each page of a region is a register: writes set it, reads return it. A history is
linearizable if every completed operation can be given a point between its
invocation and its completion at which it takes effect, in one order that a
single register would accept. Operations whose outcome is unknown (``info``) may
take effect at any point after their invocation, or never; failed ones never do.

The search walks the call and return events in time order, tries to linearize
each pending call, and backtracks when it meets the return of an operation it has
not yet placed. Lowe's improvement caches (placed operations, register value)
pairs already explored, which makes the search practical. Histories are split
per page first (a register's history is linearizable if and only if each page's
is, as the pages are independent).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from .history import FAIL, INFO, Op


@dataclass
class _Entry:
    op: int  # index into the partition's ops
    call: bool
    time: float
    prev: _Entry | None = None
    next: _Entry | None = None
    match: _Entry | None = None  # a call's return, a return's call


@dataclass
class Verdict:
    ok: bool
    region: str = ""
    page: int = -1
    ops: list[Op] | None = None  # the page's operations, when it failed

    def __bool__(self) -> bool:
        return self.ok


def check(ops: list[Op], initial: str | None = None) -> Verdict:
    """Whether the read and write operations are linearizable, page by page."""
    pages: dict[tuple[str, int], list[Op]] = defaultdict(list)
    for op in ops:
        if op.outcome == FAIL or (op.f == "read" and op.outcome == INFO):
            continue  # never happened, or constrains nothing
        pages[(op.region, op.page)].append(op)
    for (region, page), mine in sorted(pages.items()):
        if not _linearizable(mine, initial):
            return Verdict(False, region, page, mine)
    return Verdict(True)


def _linearizable(ops: list[Op], initial: str | None) -> bool:
    horizon = max((o.start for o in ops), default=0.0)
    horizon = max([horizon] + [o.end for o in ops if o.end != float("inf")]) + 1.0
    events: list[_Entry] = []
    for i, op in enumerate(ops):
        call = _Entry(i, True, op.start)
        ret = _Entry(i, False, op.end if op.end != float("inf") else horizon)
        call.match, ret.match = ret, call
        events += [call, ret]
    # Calls before returns at equal times: such operations count as concurrent.
    events.sort(key=lambda e: (e.time, 0 if e.call else 1))
    head = _Entry(-1, True, float("-inf"))
    prev = head
    for e in events:
        prev.next, e.prev = e, prev
        prev = e

    def lift(call: _Entry) -> None:
        for e in (call, call.match):
            assert e is not None and e.prev is not None
            e.prev.next = e.next
            if e.next is not None:
                e.next.prev = e.prev

    def unlift(call: _Entry) -> None:
        for e in (call.match, call):
            assert e is not None and e.prev is not None
            e.prev.next = e
            if e.next is not None:
                e.next.prev = e

    state = initial
    placed = 0  # bitset of linearized operations
    seen: set[tuple[int, str | None]] = set()
    stack: list[tuple[_Entry, str | None]] = []
    entry = head.next
    while head.next is not None:
        assert entry is not None
        if entry.call:
            op = ops[entry.op]
            if op.f == "write":
                ok, new = True, op.value
            else:
                ok, new = op.value == state, state
            key = (placed | (1 << entry.op), new)
            if ok and key not in seen:
                seen.add(key)
                stack.append((entry, state))
                state, placed = new, key[0]
                lift(entry)
                entry = head.next
                continue
            entry = entry.next
        else:
            if not stack:
                return False
            call, state = stack.pop()
            placed &= ~(1 << call.op)
            unlift(call)
            entry = call.next
    return True
