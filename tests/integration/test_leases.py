"""One writer per region: leases, epochs and fencing, against a real cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import ecmem
from tests.harness import TestCluster

pytestmark = pytest.mark.integration
WRITER = Path(__file__).with_name("fence_writer.py")


def test_second_writer_is_refused_then_waits(cluster: TestCluster) -> None:
    a, b = cluster.client(), cluster.client()
    try:
        a.create_region("lease/r", 0, "rep:3")
        fa = a.open("lease/r", "r+b")
        fa.write(b"from A")
        fa.flush()
        with pytest.raises(ecmem.RegionBusy) as err:
            b.open("lease/r", "r+b")
        assert "open for writing by" in str(err.value) and "pid" in str(err.value)
        assert err.value.holder and err.value.retriable
        with pytest.raises(ecmem.RegionBusy):
            b.pwrite("lease/r", 0, b"x")
        # Readers are never kept out, and see what was flushed.
        with b.open("lease/r", "rb") as r:
            assert r.read() == b"from A"
        threading.Timer(1.0, fa.close).start()
        t = time.monotonic()
        with b.open("lease/r", "r+b", timeout=10) as fb:
            assert 0.5 < time.monotonic() - t < 9
            fb.write(b"from B")
        assert a.pread("lease/r", 0, 100) == b"from B"
        # pwrite keeps the lease until released
        b.pwrite("lease/r", 0, b"f")
        with pytest.raises(ecmem.RegionBusy):
            a.open("lease/r", "ab")
        b.release("lease/r")
        with a.open("lease/r", "ab") as f:
            f.write(b"!")
        assert b.pread("lease/r", 0, 100) == b"from B!"
    finally:
        a.close()
        b.close()


def test_dead_writers_lease_expires(cluster: TestCluster) -> None:
    cl = cluster.client()
    cl.create_region("lease/dead", 0, "rep:3")
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), cluster.zk, cluster.name, "lease/dead", "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin and proc.stdout
        proc.stdin.write("open\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ok"
        with pytest.raises(ecmem.RegionBusy):
            cl.open("lease/dead", "r+b")
        proc.kill()
        with cl.open("lease/dead", "r+b", timeout=15) as f:
            f.write(b"mine now")
    finally:
        proc.kill()
        proc.wait()
        cl.close()


def start_writer(
    cluster: TestCluster, region: str
) -> tuple[subprocess.Popen[str], Callable[[str], str]]:
    """fence_writer.py with a 2 s session, and a function that sends it a command and
    returns its answer."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), cluster.zk, cluster.name, region, "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def ask(cmd: str) -> str:
        assert proc.stdin and proc.stdout
        proc.stdin.write(cmd + "\n")
        proc.stdin.flush()
        return proc.stdout.readline().strip()

    return proc, ask


def test_paused_writer_is_fenced(cluster: TestCluster) -> None:
    cl = cluster.client()
    region = "lease/fence"
    cl.create_region(region, 0, "ec:4+2")
    proc, ask = start_writer(cluster, region)
    try:
        assert ask("open") == "ok"
        for n in range(3):
            assert ask(f"write {n}") == "ok"
        proc.send_signal(signal.SIGSTOP)  # A keeps its node connections open while paused
        time.sleep(2 * 2 + 1)  # past A's session timeout: its lease is gone
        with cl.open(region, "r+b", timeout=10) as f:
            f.seek(5 * 16)
            f.write(b"B-marker-00005\n")
        proc.send_signal(signal.SIGCONT)
        t = time.monotonic()
        answer = ask("write 7")
        assert answer.startswith("error Fenced"), answer
        assert time.monotonic() - t < 15, "a fenced writer must get an error, not hang"
        data = cl.pread(region, 0, 200)
        assert data[5 * 16 : 5 * 16 + 15] == b"B-marker-00005\n"
        assert b"A-0000000000007" not in data
        for n in range(3):
            assert data[n * 16 : n * 16 + 16] == f"A-{n:013d}\n".encode()
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()
        cl.close()


def test_paused_page_writer_is_fenced(cluster: TestCluster) -> None:
    """The same with page writes: page patches over the blocking client's sockets."""
    from tests.integration.fence_writer import page

    cl = cluster.client()
    region = "lease/pages"
    cl.create_region(region, 0, "ec:4+2", chunk=65536)
    before = os.urandom(8 * 4096)
    cl.pwrite(region, 0, before)
    cl.release(region)
    proc, ask = start_writer(cluster, region)
    try:
        assert ask("page 1") == "ok" and ask("page 2") == "ok"
        assert ask("patched") == f"ok {2 * 4096}"  # both went as page patches
        proc.send_signal(signal.SIGSTOP)
        time.sleep(2 * 2 + 1)  # past A's session timeout: its lease is gone
        cl.pwrite(region, 3 * 4096, b"B" * 4096)  # takes over: A's patches kept, folded
        cl.release(region)
        proc.send_signal(signal.SIGCONT)
        t = time.monotonic()
        answer = ask("page 4")
        assert answer.startswith("error"), answer
        assert "Fenced" in answer or "lease" in answer.lower(), answer
        assert time.monotonic() - t < 15, "a fenced writer must get an error, not hang"
        data = cl.pread(region, 0, 8 * 4096)
        assert data[4096 : 3 * 4096] == page(1) + page(2)  # acknowledged before the pause
        assert data[3 * 4096 : 4 * 4096] == b"B" * 4096
        assert data[4 * 4096 : 5 * 4096] == before[4 * 4096 : 5 * 4096]  # not A's page 4
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()
        cl.close()


def test_nodes_refuse_an_older_epoch(cluster: TestCluster) -> None:
    """Fencing at the nodes alone (without the lease) keeps a stale writer out."""
    from ecmem import wire

    cl = cluster.client()
    try:
        cl.create_region("lease/epochs", 0, "rep:3")
        cl.pwrite("lease/epochs", 0, b"v1")
        meta = cl.region_meta("lease/epochs")
        node = meta.slabs[0][0][0]
        stale = (meta.epoch - 1) << wire.SEQ_BITS | 99
        _, reply = cl.run(
            cl.async_client.pool.request(
                node, wire.Put(meta.id, 0, 0, stale, 2, 0, 0, 0, 2, 0, 0, b"xx")
            )
        )
        assert isinstance(reply, wire.Error) and reply.code == wire.E_FENCED
        _, reply = cl.run(cl.async_client.pool.request(node, wire.Fence(meta.id, meta.epoch - 1)))
        assert isinstance(reply, wire.Error) and reply.code == wire.E_FENCED
        assert cl.pread("lease/epochs", 0, 10) == b"v1"
    finally:
        cl.close()
