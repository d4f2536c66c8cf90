"""Nodes killed, restarted, corrupted and full: reads stay right or fail clearly."""

from __future__ import annotations

import os
import signal
import time

import pytest

import ecmem
from ecmem import wire
from tests.harness import SESSION_TIMEOUT, TestCluster, region_nodes

RID = "00000000000000a1"  # a region id as a record names one

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def corrupt(cl: ecmem.Client, name: str, stripe: int, index: int, mode: str, offset: int) -> None:
    ac = cl.async_client
    meta = cl.run(ac.region_meta(name))
    node = meta.slabs[stripe // meta.slab_stripes][index][0]
    _, reply = cl.run(ac.pool.request(node, wire.Corrupt(meta.id, stripe, index, mode, offset)))
    assert isinstance(reply, wire.Ok), reply


@pytest.mark.parametrize("policy,lose", [("ec:4+2", 2), ("ec:2+1", 1), ("rep:3", 2)])
def test_reads_survive_m_losses_and_fail_clearly_beyond(
    fresh_cluster: TestCluster, policy: str, lose: int
) -> None:
    cl = fresh_cluster.client()
    try:
        data = os.urandom(5 * MiB + 4321)
        cl.create_region("r", 0, policy)
        cl.pwrite("r", 0, data)
        victims = region_nodes(cl, "r")
        fresh_cluster.kill(*victims[:lose])
        assert cl.pread("r", 0, len(data)) == data
        assert cl.pread("r", 777_777, 3) == data[777_777:777_780]
        fresh_cluster.kill(victims[lose])
        with pytest.raises(ecmem.DataUnavailableError) as err:
            cl.pread("r", 0, len(data))
        e = err.value
        assert e.region == "r" and e.slab == 0 and e.retriable
        assert len(e.missing) >= lose + 1
        msg = str(e)
        assert "'r'" in msg and "slab 0" in msg and "fragment" in msg
        assert "ecmem status" in msg
    finally:
        cl.close()


def test_corrupt_fragments_detected_and_read_around(cluster: TestCluster) -> None:
    cl = cluster.client()
    try:
        cl.create_region("bad", 0, "ec:4+2")
        sd = cl.stat("bad").stripe_size
        data = os.urandom(3 * sd)
        cl.pwrite("bad", 0, data)
        corrupt(cl, "bad", 0, 0, "flip", 100)  # data fragment, healthy path reads it
        corrupt(cl, "bad", 1, 1, "truncate", 1000)
        corrupt(cl, "bad", 2, 4, "flip", 5000)  # parity
        assert cl.pread("bad", 0, len(data)) == data
        assert cl.pread("bad", 10, 50) == data[10:60]
        # two more damaged fragments are too many for ec:4+2 in stripe 0
        corrupt(cl, "bad", 0, 1, "flip", 100)
        corrupt(cl, "bad", 0, 2, "flip", 100)
        with pytest.raises(ecmem.DataUnavailableError) as err:
            cl.pread("bad", 0, sd)
        assert "checksum mismatch" in str(err.value)
        assert cl.pread("bad", sd, sd) == data[sd : 2 * sd]
        cl.delete_region("bad")
    finally:
        cl.close()


def test_debug_requests_refused_without_flag(zk_hosts: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = TestCluster(tmp_path, zk_hosts, "nodebug", nodes=1)
    try:
        state = c.local.load()
        state.allow_debug = False
        c.local.save(state)
        c.kill("node-1")
        c.restart("node-1")
        cl = c.client()
        try:
            _, reply = cl.run(
                cl.async_client.pool.request("node-1", wire.Corrupt(RID, 0, 0, "flip", 0))
            )
            assert isinstance(reply, wire.Error) and reply.code == wire.E_DENIED
            assert "--allow-debug" in reply.message
        finally:
            cl.close()
    finally:
        c.down()


def test_node_down_detected_and_rejoins_with_data(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    c = TestCluster(tmp_path_factory.mktemp("persist"), zk_hosts, "persist", persist=True)
    cl = c.client()
    try:
        data = os.urandom(3 * MiB)
        cl.create_region("p", 0, "ec:4+2")
        cl.pwrite("p", 0, data)
        victim = region_nodes(cl, "p")[0]
        c.local.kill_node(victim)
        took = c.wait_down(victim)
        assert took <= SESSION_TIMEOUT + 2.0, f"down noticed after {took:.1f}s"
        assert c.all_nodes()[victim].state == "down"
        c.restart(victim)
        assert c.all_nodes()[victim].state == "up"
        # The node serves its own fragments again: lose two others and still read.
        others = [n for n in region_nodes(cl, "p") if n != victim][:2]
        c.kill(*others)
        assert cl.pread("p", 0, len(data)) == data
    finally:
        cl.close()
        c.down()


def test_restart_without_data_is_not_trusted(fresh_cluster: TestCluster) -> None:
    # The coordinator would rebuild the empty nodes' slots in place at once: hold it.
    coordinator = fresh_cluster.local.load().coordinator_pid
    os.kill(coordinator, signal.SIGSTOP)
    cl = fresh_cluster.client()
    try:
        data = os.urandom(2 * MiB)
        cl.create_region("amnesia", 0, "ec:4+2")
        cl.pwrite("amnesia", 0, data)
        nodes = region_nodes(cl, "amnesia")
        fresh_cluster.kill(nodes[0], nodes[1])
        fresh_cluster.restart(nodes[0], nodes[1])  # back, but empty: a new incarnation
        assert cl.pread("amnesia", 0, len(data)) == data
        fresh_cluster.kill(nodes[2])
        with pytest.raises(ecmem.DataUnavailableError) as err:
            cl.pread("amnesia", 0, len(data))
        assert "restarted without its data" in str(err.value)
    finally:
        os.kill(coordinator, signal.SIGCONT)
        cl.close()


def test_full_node_refuses_and_placement_avoids_it(zk_hosts: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = TestCluster(tmp_path, zk_hosts, "full", nodes=6, capacity="8MiB")
    cl = c.client()
    try:
        # Two regions, each placed while the nodes were empty, written past what fits.
        for n in ("fill1", "fill2"):
            cl.create_region(n, 28 * MiB, "ec:4+2", chunk=64 * 1024, slab_size="4MiB")
        cl.pwrite("fill1", 0, os.urandom(28 * MiB))
        with pytest.raises(ecmem.NoSpaceError) as err:
            cl.pwrite("fill2", 0, os.urandom(28 * MiB))
        assert "full" in str(err.value)
        assert cl.pread("fill1", 0, 10) is not None  # what was stored stays readable
        time.sleep(1.5)  # nodes publish their usage every second
        with pytest.raises(ecmem.NotEnoughNodesError) as err2:
            cl.create_region("more", 64 * MiB, "ec:4+2")
        assert "full" in str(err2.value)
        big = c.add_node(capacity=256 * MiB)
        time.sleep(1.5)
        for n in list(c.live()):
            if n != big:
                c.local.kill_node(n)
        c.wait_down(*[n for n in c.node_ids if n != big])
        with pytest.raises(ecmem.NotEnoughNodesError) as err3:
            cl.create_region("wide", 0, "ec:4+2")
        assert "needs 6 live storage nodes" in str(err3.value)
        cl.create_region("narrow", 0, "rep:1")
        cl.pwrite("narrow", 0, b"fits on the new node")
        assert region_nodes(cl, "narrow") == [big]
    finally:
        cl.close()
        c.down()


def test_paused_node_is_read_around(cluster: TestCluster) -> None:
    cl = cluster.client()
    data = os.urandom(8 * MiB)
    cl.create_region("slow", 0, "ec:4+2")
    cl.pwrite("slow", 0, data)
    victim = region_nodes(cl, "slow")[0]  # holds data fragment 0 of every stripe of slab 0
    cluster.signal(victim, signal.SIGSTOP)
    try:
        t = time.monotonic()
        assert cl.pread("slow", 0, len(data)) == data
        first = time.monotonic() - t
        t = time.monotonic()
        for _ in range(5):
            assert cl.pread("slow", 100, 1000) == data[100:1100]
        later = (time.monotonic() - t) / 5
        assert first < 4.0, f"first read took {first:.1f}s"
        assert later < 0.5, f"reads kept waiting on the paused node ({later:.2f}s each)"
    finally:
        cluster.signal(victim, signal.SIGCONT)
        cl.delete_region("slow")
        cl.close()


def test_paused_node_is_suspected_within_a_second(cluster: TestCluster) -> None:
    """Real processes, real heartbeats: a healthy cluster gives no suspicion while the
    client idles or writes; SIGSTOP on a node is noticed within a second, and reads go
    on around it."""
    cl = cluster.client()
    data = os.urandom(16 * MiB)
    try:
        cl.create_region("beats", 0, "ec:4+2")
        cl.pwrite("beats", 0, data)
        time.sleep(1.0)  # a blocking client between calls: the beater runs on regardless
        assert cl.metrics.snapshot()["suspicions"] == 0
        victim = region_nodes(cl, "beats")[0]
        cluster.signal(victim, signal.SIGSTOP)
        t = time.monotonic()
        try:
            while cl.metrics.snapshot()["suspicions"] == 0 and time.monotonic() - t < 3.0:
                time.sleep(0.01)
            took = time.monotonic() - t
            assert cl.pread("beats", 0, 4096) == data[:4096]
        finally:
            cluster.signal(victim, signal.SIGCONT)
        assert took < 1.0, f"a paused node was suspected only after {took:.2f}s"
    finally:
        cl.delete_region("beats")
        cl.close()
