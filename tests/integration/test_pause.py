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


def test_a_write_in_flight_to_a_paused_node_goes_to_a_handoff(fresh_cluster: TestCluster) -> None:
    """A node that stops answering (paused, or cut off: no reset ever comes) must not hold
    a write for the whole request timeout: once silent for a while, its share of the write
    goes to a handoff."""
    c = fresh_cluster
    c.add_node()  # a seventh node to hand off to
    # 16 MiB: 4 MiB for each node, more than a socket takes in while its reader is stopped.
    first, second = os.urandom(16 * MiB), os.urandom(16 * MiB)
    with c.client() as cl:
        cl.create_region("w", 0, "ec:4+2")
        cl.pwrite("w", 0, first)
        victim = region_nodes(cl, "w")[0]
        pid = c.pid(victim)
        os.kill(pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            cl.pwrite("w", 0, second)
            took = time.monotonic() - t0
        finally:
            os.kill(pid, signal.SIGCONT)
        assert cl.pread("w", 0, len(second)) == second
    print(f"the write took {took:.2f}s with {victim} paused")
    assert took < 6.0, f"a write waited {took:.1f}s on paused {victim} (request timeout is 10s)"
