"""A run's report: JSON with the verdict, the faults and the numbers, and a PNG of
throughput and latency over time with the faults marked."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .schedule import Fault


@dataclass
class Sample:
    time: float  # seconds from the start
    kind: str  # write or read
    seconds: float  # latency
    nbytes: int
    ok: bool


@dataclass
class RunReport:
    scenario: str
    seed: int
    passed: bool = False
    problems: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    def fail(self, why: str) -> None:
        self.problems.append(why)

    def latency_ms(self, kind: str) -> dict[str, float]:
        """p50, p99 and max latency of the ``kind`` operations, failed ones included."""
        times = sorted(s.seconds * 1000 for s in self.samples if s.kind == kind)
        if not times:
            return {}

        def at(q: float) -> float:
            return round(times[min(len(times) - 1, int(q * len(times)))], 1)

        return {"p50": at(0.5), "p99": at(0.99), "max": round(times[-1], 1)}

    def write(self, folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"{self.scenario}-seed{self.seed}"
        data = {
            "scenario": self.scenario,
            "seed": self.seed,
            "passed": self.passed,
            "problems": self.problems,
            "faults": [f.__dict__ for f in self.faults],
            "numbers": self.numbers,
            "operations": len(self.samples),
        }
        json_path = stem.with_suffix(".json")
        json_path.write_text(json.dumps(data, indent=2))
        png = stem.with_suffix(".png")
        self.plot(png)
        return json_path, png

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
        for kind, color in (("write", "tab:blue"), ("read", "tab:green")):
            mine = [s for s in self.samples if s.kind == kind]
            if not mine:
                continue
            end = max(s.time for s in mine)
            buckets = [0.0] * (int(end) + 1)
            for s in mine:
                if s.ok:
                    buckets[int(s.time)] += s.nbytes / 1e6
            top.plot(range(len(buckets)), buckets, label=f"{kind} MB/s", color=color)
            bottom.scatter(
                [s.time for s in mine],
                [s.seconds * 1000 for s in mine],
                s=4,
                color=[color if s.ok else "tab:red" for s in mine],
                label=f"{kind} latency",
            )
        for ax in (top, bottom):
            for f in self.faults:
                ax.axvspan(f.at, max(f.until, f.at + 0.05), color="tab:orange", alpha=0.2)
        top.set_ylabel("MB/s")
        bottom.set_ylabel("latency, ms (red: failed)")
        bottom.set_yscale("log")
        bottom.set_xlabel("seconds (faults shaded)")
        if top.get_legend_handles_labels()[0]:
            top.legend(loc="upper right")
        verdict = "PASS" if self.passed else "FAIL"
        top.set_title(f"{self.scenario}, seed {self.seed}: {verdict}")
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
