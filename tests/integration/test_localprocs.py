"""Starting a local ZooKeeper: a server that exits at start (its port taken between
choosing and binding it) is tried again on another port; one that keeps exiting is
reported with the end of its log."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ecmem.errors import ClusterError
from ecmem.localprocs import ZK_ATTEMPTS, launch_zookeeper, stop, zk_ok

Spawn = Callable[[list[str], str], int]


def _spawner(logs: Path, fail_first: int) -> tuple[list[int], Spawn]:
    """A spawn that runs a process exiting at once (naming the same config, so it
    looks like ours) for the first ``fail_first`` starts, then the real command."""
    pids: list[int] = []

    def spawn(cmd: list[str], log_name: str) -> int:
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / log_name, "ab") as out:
            if len(pids) < fail_first:
                out.write(b"java.net.BindException: Address already in use\n")
                out.flush()
                args = ["sh", "-c", "exit 1", cmd[-1]]
            else:
                args = cmd
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        pids.append(proc.pid)
        return proc.pid

    return pids, spawn


def test_a_server_that_exits_at_start_is_tried_on_another_port(tmp_path: Path) -> None:
    (tmp_path / "zk" / "data").mkdir(parents=True)
    pids, spawn = _spawner(tmp_path / "logs", fail_first=1)
    pid, port = launch_zookeeper(tmp_path / "zk", tmp_path / "logs", spawn)
    try:
        # Retried past the server that exited (a real one may exit at start too, as on CI).
        assert len(pids) >= 2 and pid == pids[-1]
        assert zk_ok(port)
    finally:
        assert stop(pid, str(tmp_path / "zk" / "zoo.cfg"))


def test_a_server_that_keeps_exiting_is_reported_with_its_log(tmp_path: Path) -> None:
    (tmp_path / "zk" / "data").mkdir(parents=True)
    pids, spawn = _spawner(tmp_path / "logs", fail_first=ZK_ATTEMPTS)
    with pytest.raises(ClusterError) as err:
        launch_zookeeper(tmp_path / "zk", tmp_path / "logs", spawn)
    assert len(pids) == ZK_ATTEMPTS
    assert f"exited at start {ZK_ATTEMPTS} times" in str(err.value)
    assert "exited before answering (exit status 1)" in str(err.value)
    assert "Address already in use" in str(err.value)
