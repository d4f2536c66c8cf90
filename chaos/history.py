"""Histories of client operations, as Jepsen records them.

Every operation is recorded twice: when a client invokes it, and when it
completes as ``ok``, ``fail`` (it certainly did not happen) or ``info`` (the
client cannot tell: a timeout, a crash). Checkers read the pairs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"


@dataclass(frozen=True)
class Event:
    process: int  # which client; one operation at a time each
    type: str  # invoke, ok, fail, info
    f: str  # read or write
    region: str
    page: int  # the page (or any unit a register stands for) the operation is about
    value: str | None = None  # what a write wrote (on invoke) or a read returned (on ok)
    time: float = 0.0
    epoch: int = 0  # the writer's epoch, for writes
    seq: int = 0  # the writer's sequence number within its epoch, for writes


@dataclass
class Op:
    """One operation: its invocation and, if it completed, how."""

    process: int
    f: str
    region: str
    page: int
    value: str | None
    start: float
    end: float  # +inf while it might still take effect (info, or no completion)
    outcome: str  # ok, fail or info
    epoch: int = 0
    seq: int = 0
    index: int = 0  # position of the invocation in the history


@dataclass
class History:
    events: list[Event] = field(default_factory=list)

    def add(self, event: Event) -> None:
        self.events.append(event)

    def ops(self) -> list[Op]:
        """Pair invocations with completions, per process."""
        pending: dict[int, tuple[int, Event]] = {}
        out: list[Op] = []
        for i, e in enumerate(self.events):
            if e.type == INVOKE:
                if e.process in pending:
                    raise ValueError(f"process {e.process} invoked twice without completing")
                pending[e.process] = (i, e)
                continue
            if e.process not in pending:
                raise ValueError(f"process {e.process} completed an operation it never invoked")
            j, inv = pending.pop(e.process)
            value = e.value if inv.f == "read" else inv.value
            end = e.time if e.type in (OK, FAIL) else float("inf")
            out.append(
                Op(
                    e.process,
                    inv.f,
                    inv.region,
                    inv.page,
                    value,
                    inv.time,
                    end,
                    e.type,
                    inv.epoch or e.epoch,
                    inv.seq or e.seq,
                    j,
                )
            )
        for j, inv in pending.values():
            out.append(
                Op(
                    inv.process,
                    inv.f,
                    inv.region,
                    inv.page,
                    inv.value,
                    inv.time,
                    float("inf"),
                    INFO,
                    inv.epoch,
                    inv.seq,
                    j,
                )
            )
        return sorted(out, key=lambda o: o.index)

    def dump(self, path: Path) -> None:
        path.write_text("\n".join(json.dumps(asdict(e)) for e in self.events) + "\n")

    @classmethod
    def load(cls, path: Path) -> History:
        return cls([Event(**json.loads(line)) for line in path.read_text().splitlines() if line])

    @classmethod
    def of(cls, events: Iterable[dict[str, Any]]) -> History:
        return cls([Event(**e) for e in events])

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)
