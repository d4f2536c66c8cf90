"""A node SIGSTOPped during a stream of reads: reads go on from the other fragments
within a second, long before its ZooKeeper session would expire."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.harness import TestCluster, region_nodes

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


@pytest.mark.parametrize("size", [64 * 1024, MiB], ids=["small", "large"])
def test_reads_go_around_a_paused_node(fresh_cluster: TestCluster, size: int) -> None:
    c = fresh_cluster
    data = os.urandom(32 * MiB)
    with c.client() as cl:
        cl.create_region("p", len(data), "ec:4+2")
        cl.pwrite("p", 0, data)
        victim = region_nodes(cl, "p")[0]  # holds data fragment 0 of every stripe
        pid = c.pid(victim)
        worst = 0.0
        paused_at = 0.0
        reads = 0
        try:
            start = time.monotonic()
            while time.monotonic() - start < 2.0:  # a 1.5s pause: the 2s session survives
                if not paused_at and time.monotonic() - start > 0.5:
                    os.kill(pid, signal.SIGSTOP)
                    paused_at = time.monotonic()
                off = (reads * 4099 * 1024) % (len(data) - size)
                t0 = time.monotonic()
                got = cl.pread("p", off, size)
                took = time.monotonic() - t0
                assert got == data[off : off + size], f"wrong bytes at {off}"
                if paused_at:
                    worst = max(worst, took)
                reads += 1
        finally:
            os.kill(pid, signal.SIGCONT)
    print(f"{reads} reads, slowest during the pause {worst * 1000:.0f} ms")
    assert worst < 1.0, f"a read took {worst:.2f}s while {victim} was paused"
