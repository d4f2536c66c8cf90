"""A storage node SIGKILLed in the middle of a stream of stripe writes: every write either
fails cleanly or lands whole (on a handoff node, or degraded); none is half applied."""

from __future__ import annotations

import os
import threading
import time

import pytest

import ecmem
from tests.harness import TestCluster

pytestmark = pytest.mark.integration
MiB = 1 << 20


def test_node_killed_mid_write(fresh_cluster: TestCluster) -> None:
    c = fresh_cluster
    c.add_node()  # a seventh node to hand off to
    cl = c.client()
    name = "midwrite"
    cl.create_region(name, 0, "ec:4+2", chunk=64 * 1024, slab_size="4MiB")
    size = 300 * 1024  # several stripes per write, not stripe-aligned
    writes: list[tuple[int, bytes, str]] = []  # offset, data, outcome
    stop = threading.Event()

    def writer() -> None:
        for i in range(200):
            if stop.is_set():
                return
            data = os.urandom(size)
            offset = i * size
            try:
                cl.pwrite(name, offset, data)
                writes.append((offset, data, "ok"))
            except ecmem.EcmemError as exc:
                writes.append((offset, data, type(exc).__name__))
                cl.release(name)  # the next pwrite takes over again, recovering

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(1.0)
    victim = [n for n, _ in cl.region_meta(name).slabs[0]][1]
    c.kill(victim, wait_gone=False)
    time.sleep(2.0)
    stop.set()
    t.join(60)
    assert not t.is_alive()
    assert writes and any(o == "ok" for _, _, o in writes)
    cl.release(name)
    with cl.open(name, "r+b", timeout=10):  # recovery by a fresh writer
        pass
    region = cl.pread(name, 0, 1 << 30)
    for offset, data, outcome in writes:
        got = region[offset : offset + size]
        if outcome == "ok":
            assert got == data, f"acknowledged write at {offset} lost"
        else:
            assert got in (data, bytes(len(got)), b""), (
                f"failed write at {offset} ({outcome}) is half applied"
            )
    cl.close()
