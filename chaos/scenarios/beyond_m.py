"""Scenario 2: SIGKILL M+1 hosts: reads fail clearly, never with wrong bytes; writes are
refused; once the hosts return (with their data), nothing is lost.
"""

from __future__ import annotations

import random
import time

import ecmem

from ..report import RunReport
from ..target import Target
from .common import BLOCK, MiB, kill_hosts, reads_back, region_with_data


def beyond_m(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 2: SIGKILL M+1 hosts: reads fail clearly, never with wrong bytes; writes
    are refused; once the hosts return (with their data), nothing is lost."""
    rng = random.Random(seed)
    blocks = max(8, min(64, mib * MiB // BLOCK))
    data = region_with_data(c, c.region("s2"), seed, blocks)
    victims = rng.sample(c.node_hosts, 3)
    t0 = time.monotonic()
    kill_hosts(c, report, t0, victims)
    c.wait_gone(victims)
    errors = wrong = 0
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        for i in range(blocks):
            try:
                got = cl.pread(c.region("s2"), i * BLOCK, BLOCK)
                wrong += got != data[i * BLOCK : (i + 1) * BLOCK]
            except ecmem.DataUnavailableError:
                errors += 1
            except ecmem.EcmemError as exc:
                report.fail(f"block {i}: an unclear error with M+1 hosts down: {exc!r}")
        try:
            cl.pwrite(c.region("s2"), 0, b"x" * 4096)
            report.fail("a write was acknowledged with M+1 hosts down")
        except ecmem.EcmemError:
            pass
    report.numbers.update(blocks=blocks, unreadable_blocks=errors)
    if wrong:
        report.fail(f"{wrong} blocks read WRONG BYTES with M+1 hosts down")
    if errors == 0:
        report.fail("every block read with M+1 hosts down: the hosts held nothing?")
    for host in victims:
        c.start(host)
    c.wait_nodes(victims)
    if not reads_back(c, c.region("s2"), data):
        report.fail("after the hosts returned, the region reads differently")
    report.numbers["seconds"] = time.monotonic() - t0
    report.passed = not report.problems
