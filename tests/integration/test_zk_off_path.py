"""ZooKeeper stays off the data path: with it paused, reads and in-place writes go on."""

from __future__ import annotations

import os
import signal
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
