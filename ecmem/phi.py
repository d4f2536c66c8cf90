"""Failure suspicion from heartbeat arrivals (phi accrual), pure: time is a parameter.

Each node's answers arrive about every beat interval; how far they spread is learned
from the last ``WINDOW`` gaps. ``phi`` is -log10 of the chance that an answer still
comes after a silence this long, under a normal fit of those gaps: a node whose
answers always come like clockwork is suspect soon, one whose answers wander (a
busy host) is given the time its own history says it needs. Two bounds keep the
judgement sane: never before ``MIN_SILENCE`` (a couple of lost datagrams are no
failure) and always after ``MAX_SILENCE`` (a paused or dead node is found within a
second, whatever the history). Time the detector itself was not running (its
process descheduled, its thread starved) is not counted as the node's silence.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

INTERVAL = 0.1  # seconds between beats
WINDOW = 100  # gaps remembered per node
THRESHOLD = 8.0  # phi at which a node is suspect: about 1 in 10**8 by its own history
MIN_STD = 0.04  # seconds: gaps never judged tighter than this
MIN_SILENCE = 3 * INTERVAL
MAX_SILENCE = 0.8
STALL = 2 * INTERVAL  # a gap between our own rounds longer than this was our stall


def phi(silence: float, mean: float, std: float) -> float:
    """-log10 P(gap > silence) for gaps ~ Normal(mean, std)."""
    z = (silence - mean) / (max(std, 1e-9) * math.sqrt(2.0))
    tail = 0.5 * math.erfc(z)
    return math.inf if tail <= 0.0 else -math.log10(tail)


@dataclass
class Arrivals:
    """When one node's answers came; ``last`` moves on past our own stalls."""

    last: float
    gaps: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def heard(self, now: float) -> None:
        gap = now - self.last
        if gap > 0:
            self.gaps.append(gap)
        self.last = now

    def fit(self, interval: float) -> tuple[float, float]:
        if len(self.gaps) < 2:
            return interval, interval  # no history yet: lenient (about 0.66 s)
        mean = sum(self.gaps) / len(self.gaps)
        var = sum((g - mean) ** 2 for g in self.gaps) / (len(self.gaps) - 1)
        return mean, math.sqrt(var)

    def suspect(self, now: float, interval: float) -> bool:
        silence = now - self.last
        if silence < MIN_SILENCE:
            return False
        if silence >= MAX_SILENCE:
            return True
        mean, std = self.fit(interval)
        return phi(silence, mean, max(std, MIN_STD)) >= THRESHOLD


class Detector:
    """Suspicion of a set of nodes from their answers, reported on every change.

    ``round(nodes, now)`` starts a round (judging first) and says whom to beat;
    ``heard(node, now)`` records an answer. A node that leaves the membership while
    suspect stays suspect until it is back and answers: leaving is no answer.
    """

    def __init__(self, on_change: Callable[[str, bool], None], interval: float = INTERVAL) -> None:
        self.on_change = on_change
        self.interval = interval
        self.nodes: dict[str, Arrivals] = {}
        self.suspect: set[str] = set()
        self._last_round: float | None = None

    def heard(self, node: str, now: float) -> None:
        arrivals = self.nodes.get(node)
        if arrivals is None:
            return
        arrivals.heard(now)
        if node in self.suspect:
            self.suspect.discard(node)
            self.on_change(node, False)

    def judge(self, now: float) -> None:
        for node, arrivals in self.nodes.items():
            if node not in self.suspect and arrivals.suspect(now, self.interval):
                self.suspect.add(node)
                self.on_change(node, True)

    def round(self, nodes: dict[str, str], now: float) -> list[str]:
        if self._last_round is not None:
            stalled = now - self._last_round - self.interval
            if stalled > STALL - self.interval:
                # We were not running: nobody is to blame for the beats we did not send.
                for arrivals in self.nodes.values():
                    arrivals.last = min(now, arrivals.last + stalled)
        self._last_round = now
        self.judge(now)
        for gone in set(self.nodes) - set(nodes):
            del self.nodes[gone]
        for node in nodes:
            if node not in self.nodes:
                # A node back while suspect starts silent, so that it stays suspect
                # until it answers; a new one starts as just heard.
                start = now - MAX_SILENCE if node in self.suspect else now
                self.nodes[node] = Arrivals(start)
        return list(nodes)
