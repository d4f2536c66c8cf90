"""Scenario 1: SIGKILL M hosts during a long sequential write."""

from __future__ import annotations

import random
import time

import ecmem

from ..checker import Open, Write, check_region
from ..history import FAIL, INFO, OK
from ..report import RunReport, Sample
from ..target import Target
from .common import BLOCK, MiB, Reader, block_data, digest_of, healthy_within, kill_hosts


def kill_during_write(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 1: SIGKILL M hosts during a long sequential write."""
    rng = random.Random(seed)
    blocks = max(4, mib * MiB // BLOCK)
    m = 2
    victims = rng.sample(c.node_hosts, m)
    at = sorted(rng.sample(range(blocks // 5, max(blocks // 5 + m, 3 * blocks // 5)), m))
    writes: list[Write] = []
    opens: list[Open] = []
    acked = 0
    t0 = time.monotonic()
    reader = Reader(c, c.region("s1"), lambda: acked, t0)
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        cl.create_region(c.region("s1"), 0, "ec:4+2")
        reader.start()
        with cl.open(c.region("s1"), "r+b") as f:
            epoch = cl.async_client.writer_of(c.region("s1")).epoch
            opens.append(Open(epoch, time.monotonic() - t0))
            for i in range(blocks):
                if at and i == at[0]:
                    at.pop(0)
                    kill_hosts(c, report, t0, [victims[len(report.faults)]])
                data = block_data(seed, i)
                start = time.monotonic()
                try:
                    f.write(data)
                    f.flush()  # committed: acknowledged
                    outcome = OK
                    acked = i + 1
                except ecmem.EcmemError as exc:
                    outcome = FAIL if not exc.retriable else INFO
                    report.fail(f"write of block {i} failed with {m} hosts down: {exc}")
                end = time.monotonic()
                writes.append(Write(epoch, i, {i: digest_of(data)}, outcome, start - t0, end - t0))
                report.samples.append(
                    Sample(start - t0, "write", end - start, BLOCK, outcome == OK)
                )
        reader.stop.set()
        reader.join()
        report.samples += reader.samples
        final = {i: digest_of(cl.pread(c.region("s1"), i * BLOCK, BLOCK)) for i in range(blocks)}
    verdict = check_region(writes, final, opens)
    for p in verdict.problems:
        report.fail(p)
    slowest = max((s.seconds for s in reader.samples), default=0.0)
    report.numbers.update(
        blocks=blocks,
        acknowledged=acked,
        slowest_read_s=slowest,
        failed_reads=len(reader.errors),
    )
    if reader.errors:
        report.fail(f"{len(reader.errors)} reads failed, first: {reader.errors[0]}")
    if slowest > c.session_timeout + 2:
        report.fail(f"a read took {slowest:.1f}s, over session timeout + 2 s")
    # Full redundancy comes back by itself...
    healthy_within(c, report, 180, "after the kills")
    # ...for real: M more hosts die and every block still reads the same.
    kill_hosts(c, report, t0, rng.sample([h for h in c.node_hosts if h not in victims], m))
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        again = {i: digest_of(cl.pread(c.region("s1"), i * BLOCK, BLOCK)) for i in range(blocks)}
    if again != final:
        bad = sorted(i for i in final if again.get(i) != final[i])
        report.fail(f"after {m} more hosts died, blocks {bad[:8]} read differently")
    report.passed = not report.problems
