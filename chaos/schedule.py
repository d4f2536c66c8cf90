"""Seeded fault schedules: what the nemesis does to which host, and when.

A schedule is a pure function of its seed and parameters, so a failing run's seed
replays the same faults. Faults that take a host out (kill, pause, isolate) never
overlap on more than ``max_down`` hosts at once unless a scenario asks for more;
corruption hits fragments, not hosts, and does not count.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

KILL = "kill"  # SIGKILL, restarted when the fault ends
PAUSE = "pause"  # SIGSTOP, SIGCONT when it ends
ISOLATE = "isolate"  # its links down, up again when it ends
CORRUPT = "corrupt"  # flip bytes of one fragment it holds (instant)
TAKES_DOWN = (KILL, PAUSE, ISOLATE)


@dataclass(frozen=True, order=True)
class Fault:
    at: float  # seconds from the start of the run
    kind: str
    host: str
    duration: float  # seconds until it is undone (0 for instant faults)

    @property
    def until(self) -> float:
        return self.at + self.duration


def generate(
    seed: int,
    hosts: Sequence[str],
    seconds: float,
    max_down: int,
    kinds: Sequence[str] = TAKES_DOWN,
    every: float = 2.0,
    longest: float = 4.0,
    heal: float = 0.0,
) -> list[Fault]:
    """Faults at random moments about ``every`` seconds apart over ``seconds``. A host
    killed (its memory lost) counts as out for ``heal`` seconds more after its restart:
    its fragments are gone until they are rebuilt, so another kill meanwhile would take
    more than ``max_down`` hosts' data at once."""
    if not hosts:
        raise ValueError("a schedule needs at least one host")
    rng = random.Random(seed)
    out: list[Fault] = []
    t = rng.uniform(0, every)
    while t < seconds:
        kind = rng.choice(list(kinds))
        if kind == CORRUPT:
            out.append(Fault(t, kind, rng.choice(list(hosts)), 0.0))
        else:
            busy = {
                f.host
                for f in out
                if f.kind in TAKES_DOWN and f.at <= t < f.until + (heal if f.kind == KILL else 0)
            }
            if len(busy) < max_down:
                host = rng.choice([h for h in hosts if h not in busy] or list(hosts))
                if host not in busy:
                    dur = min(rng.uniform(0.5, longest), max(0.0, seconds - t))
                    out.append(Fault(t, kind, host, dur))
        t += rng.expovariate(1.0 / every)
    return out


def most_down(faults: Sequence[Fault]) -> int:
    """The most hosts a schedule has down at one moment."""
    edges = sorted(
        [(f.at, 1) for f in faults if f.kind in TAKES_DOWN and f.duration > 0]
        + [(f.until, -1) for f in faults if f.kind in TAKES_DOWN and f.duration > 0]
    )
    now = peak = 0
    for _, step in edges:  # ends sort before starts at the same moment
        now += step
        peak = max(peak, now)
    return peak
