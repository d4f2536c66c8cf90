"""ZooKeeper stays off the data path: with it paused, reads and in-place writes go on."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import ecmem
from ecmem.localcluster import LocalCluster

pytestmark = pytest.mark.integration


def test_io_goes_on_while_zookeeper_is_paused(tmp_path: Path) -> None:
    lc = LocalCluster(tmp_path / "state")
    state = lc.up(6, "512MiB", cluster="zkpause", session_timeout=10.0)
    cl = ecmem.connect(state.zk, cluster="zkpause")
    try:
        data = os.urandom(9 * 1024 * 1024)
        cl.create_region("r", len(data), "ec:4+2")
        cl.pwrite("r", 0, data)
        os.kill(state.zk_pid, signal.SIGSTOP)
        try:
            assert cl.pread("r", 0, len(data)) == data
            patch = os.urandom(100_000)
            cl.pwrite("r", 12345, patch)  # inside the region: no metadata change
            expect = data[:12345] + patch + data[12345 + len(patch) :]
            assert cl.pread("r", 0, len(data)) == expect
        finally:
            os.kill(state.zk_pid, signal.SIGCONT)
        assert cl.pread("r", 0, len(data)) == expect
    finally:
        cl.close()
        lc.down()


def test_nodes_and_coordinator_stop_on_sigterm_with_zookeeper_gone(tmp_path: Path) -> None:
    """An operator stopping a node whose ZooKeeper is down must not need SIGKILL."""
    lc = LocalCluster(tmp_path / "state")
    state = lc.up(2, "64MiB", cluster="zkgone", session_timeout=2.0)
    pids = [n.pid for n in state.nodes.values()] + [state.coordinator_pid]
    try:
        os.kill(state.zk_pid, signal.SIGKILL)
        time.sleep(1)  # every client has noticed the lost connection
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while alive := [p for p in pids if _running(p)]:
            assert time.monotonic() < deadline, f"pids {alive} ignored SIGTERM"
            time.sleep(0.1)
    finally:
        lc.down()


def _running(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
