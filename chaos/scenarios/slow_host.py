"""Scenario 7: a host SIGSTOPped for seconds during reads: reads keep going from the other
fragments, each within a second; p99 during the pause is reported.
"""

from __future__ import annotations

import random
import time

import ecmem

from ..report import RunReport, Sample
from ..schedule import Fault
from ..target import Target
from .common import BLOCK, MiB, region_with_data


def slow_host(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 7: a host SIGSTOPped for seconds during reads: reads keep going from the
    other fragments, each within a second; p99 during the pause is reported."""
    rng = random.Random(seed)
    blocks = max(4, min(64, mib * MiB // BLOCK))
    data = region_with_data(c, c.region("s7"), seed, blocks)
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        meta = cl.run(cl.async_client.region_meta(c.region("s7")))
        victim = meta.slabs[0][rng.randrange(4)][0]  # holds data fragments: reads need it
        t0 = time.monotonic()
        pause_at, pause_for = 2.0, min(3.0, c.session_timeout - 1)
        paused = resumed = False
        wrong = 0
        while time.monotonic() - t0 < pause_at + pause_for + 2:
            now = time.monotonic() - t0
            if not paused and now >= pause_at:
                c.pause(victim)
                paused = True
            if paused and not resumed and now >= pause_at + pause_for:
                c.resume(victim)
                resumed = True
                report.faults.append(Fault(pause_at, "pause", victim, pause_for))
            off = rng.randrange(len(data) // 65536) * 65536
            t = time.monotonic()
            try:
                got = cl.pread(c.region("s7"), off, 65536)
                ok = True
                wrong += got != data[off : off + 65536]
            except ecmem.EcmemError as exc:
                ok = False
                report.fail(f"a read failed during the pause: {exc}")
            report.samples.append(Sample(t - t0, "read", time.monotonic() - t, 65536, ok))
    during = sorted(s.seconds for s in report.samples if pause_at <= s.time <= pause_at + pause_for)
    p99 = during[min(len(during) - 1, int(0.99 * len(during)))] if during else 0.0
    report.numbers.update(
        reads=len(report.samples),
        reads_during_pause=len(during),
        p99_during_pause_s=p99,
        slowest_s=max((s.seconds for s in report.samples), default=0.0),
    )
    if wrong:
        report.fail(f"{wrong} reads returned WRONG BYTES")
    if not during:
        report.fail("no read completed during the pause")
    elif during[-1] > 1.0:
        report.fail(f"a read took {during[-1]:.2f}s during the pause (over a second)")
    report.passed = not report.problems
