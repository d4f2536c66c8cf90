"""Retry spacing per key: a step that keeps failing is tried less and less often (up to
a cap), and at once again after it succeeds. The rebuilder retried a failing slab on
every pass (about twice a second), taking and releasing the region's lease each time."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    first: float = 0.5
    most: float = 8.0
    clock: Callable[[], float] = time.monotonic
    _next: dict[Hashable, tuple[float, float]] = field(default_factory=dict)  # key -> (at, gap)

    def wait(self, key: Hashable) -> float:
        """Seconds until ``key`` may be tried again (0: now)."""
        at, _ = self._next.get(key, (0.0, 0.0))
        return max(0.0, at - self.clock())

    def failed(self, key: Hashable) -> float:
        """``key`` failed: returns the seconds until its next try."""
        _, gap = self._next.get(key, (0.0, 0.0))
        gap = min(self.most, gap * 2 if gap else self.first)
        self._next[key] = (self.clock() + gap, gap)
        return gap

    def succeeded(self, key: Hashable) -> None:
        self._next.pop(key, None)
