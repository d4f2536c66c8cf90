"""Lost data is never read as zeros, and never reported healthy.

A region records which stripes were written; a written stripe that no node holds
enough of is lost: reads raise DataLostError naming it, `ecmem get` exits 2, status
shows REGION_DATA_LOST (durably, in the region's record) until the region is
removed or the loss accepted. Holes (never written) still read as zeros.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ecmem
from ecmem import wire
from tests.conftest import make_cluster
from tests.harness import TestCluster, region_nodes

MiB = 1024 * 1024


def status(c: TestCluster) -> dict:  # type: ignore[type-arg]
    out = c.cli("status", "--json")
    assert out.returncode in (0, 1, 2), out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def wait_lost(c: TestCluster, region: str, timeout: float = 60) -> dict:  # type: ignore[type-arg]
    """Until status shows REGION_DATA_LOST naming ``region``."""
    deadline = time.monotonic() + timeout
    last: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        last = status(c)
        check = last["checks"].get("REGION_DATA_LOST")
        if check and region in check["summary"]:
            assert last["status"] == "HEALTH_ERR"
            return last
        time.sleep(0.5)
    raise AssertionError(f"REGION_DATA_LOST never named {region} in {timeout}s: {last}\n{c.logs()}")


def assert_lost_read(c: TestCluster, cl: ecmem.Client, name: str, size: int, tmp: Path) -> None:
    """Reads raise the data-lost error naming the stripe; `ecmem get` exits 2 and leaves
    no file; no read ever returns a zero page."""
    with pytest.raises(ecmem.DataLostError) as err:
        cl.pread(name, 0, size)
    assert f"region {name!r}" in str(err.value) and "stripe" in str(err.value)
    assert "mark-lost-ok" in str(err.value)
    with pytest.raises(ecmem.DataUnavailableError):  # the small-read path too
        cl.pread(name, 4096, 4096)
    out = tmp / f"{name.replace('/', '_')}.out"
    got = c.cli("get", name, str(out))
    assert got.returncode == 2, got.stdout + got.stderr
    assert "lost" in got.stderr, got.stderr
    assert not out.exists() or out.stat().st_size == 0


def restart_empty(c: TestCluster, *nodes: str) -> None:
    """SIGKILL nodes and start them again without their memory (no --data-dir)."""
    c.kill(*nodes)
    c.restart(*nodes)


@pytest.fixture()
def cluster8(zk_hosts: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=8, rebuild_grace=1.0, capacity="512MiB")
    yield c
    c.down()


def test_full_restart_without_memory_never_reads_zeros(
    cluster8: TestCluster, tmp_path: Path
) -> None:
    c = cluster8
    data = {"ec": os.urandom(16 * MiB), "rep": os.urandom(4 * MiB)}
    with c.client() as cl:
        cl.create_region("ec", 0, "ec:4+2")
        cl.create_region("rep", 0, "rep:3")
        for name, blob in data.items():
            cl.pwrite(name, 0, blob)
        cl.release("ec")
        cl.release("rep")
    restart_empty(c, *c.node_ids)
    # The coordinator may move slots to the spare nodes: nothing is "rebuilt" from nothing.
    for name in data:
        wait_lost(c, name)
    with c.client() as cl:
        for name, blob in data.items():
            assert_lost_read(c, cl, name, len(blob), tmp_path)
    info = c.cli("region", "info", "ec", "--json")
    assert info.returncode == 2
    assert json.loads(info.stdout)["health"] == "lost"
    assert json.loads(info.stdout)["lost_stripes"] == 4
    # The loss survives a coordinator restart: it is kept in ZooKeeper, not in memory.
    state = c.local.load()
    os.kill(state.coordinator_pid, signal.SIGKILL)
    state.coordinator_pid = c.local.spawn_coordinator(state, "coordinator2.log")
    c.local.save(state)
    c.local.wait_coordinator(state)
    time.sleep(2)
    after = wait_lost(c, "ec")
    assert "rep" in after["checks"]["REGION_DATA_LOST"]["summary"]
    # Removing the region clears it, with nothing restarted.
    assert c.cli("region", "rm", "ec").returncode == 0
    assert c.cli("region", "rm", "rep").returncode == 0
    final = status(c)
    assert "REGION_DATA_LOST" not in final["checks"], final
    assert "REBUILD_FAILED" not in final["checks"] or final["rebuild"].get("state") == "running"


def test_more_than_m_restarted_empty_is_lost_not_healthy(
    cluster8: TestCluster, tmp_path: Path
) -> None:
    c = cluster8
    blob = os.urandom(8 * MiB)
    with c.client() as cl:
        cl.create_region("r", 0, "ec:4+2")
        cl.pwrite("r", 0, blob)
        cl.release("r")
        victims = region_nodes(cl, "r")[:3]
    restart_empty(c, *victims)
    with c.client() as cl:
        with pytest.raises(ecmem.DataLostError):
            cl.pread("r", 0, len(blob))
    wait_lost(c, "r")
    info = c.cli("region", "info", "r")
    assert info.returncode == 2 and "LOST" in info.stdout, info.stdout
    with c.client() as cl:
        assert_lost_read(c, cl, "r", len(blob), tmp_path)
    # Accepting the loss: the stripes read as zeros, and health clears.
    ok = c.cli("region", "mark-lost-ok", "r")
    assert ok.returncode == 0 and "accepted" in ok.stdout, ok.stdout + ok.stderr
    with c.client() as cl:
        assert cl.pread("r", 0, len(blob)) == bytes(len(blob))
    assert "REGION_DATA_LOST" not in status(c)["checks"]


def test_fragments_deleted_on_every_holder(cluster8: TestCluster, tmp_path: Path) -> None:
    c = cluster8
    blob = os.urandom(8 * MiB)
    with c.client() as cl:
        cl.create_region("d", 0, "ec:4+2")
        cl.pwrite("d", 0, blob)
        cl.release("d")
        rid = cl.async_client.cached_meta("d").id  # type: ignore[union-attr]
        holders = region_nodes(cl, "d")
    for node in holders:
        assert isinstance(c.ask(node, wire.Delete(rid, 1, 0, 2)), wire.Ok)  # stripe 1 only
    with c.client() as cl:
        assert cl.pread("d", 0, 4 * MiB) == blob[: 4 * MiB]  # stripe 0 is untouched
        with pytest.raises(ecmem.DataLostError) as err:
            cl.pread("d", 0, len(blob))
        assert "stripe 1" in str(err.value)
    # The reader told the coordinator, which checked the region and recorded the loss.
    wait_lost(c, "d")
    info = json.loads(c.cli("region", "info", "d", "--json").stdout)
    assert info["lost"] == [[1, 2]]
    # Rewriting the lost stripe whole clears it.
    with c.client() as cl:
        cl.pwrite("d", 4 * MiB, blob[4 * MiB :])
        cl.release("d")
        assert cl.pread("d", 0, len(blob)) == blob
    assert "REGION_DATA_LOST" not in status(c)["checks"]


def test_holes_read_as_zeros_even_degraded(cluster8: TestCluster) -> None:
    c = cluster8
    page = os.urandom(4096)
    with c.client() as cl:
        cl.create_region("sparse", 64 * MiB, "ec:4+2")
        cl.pwrite("sparse", 20 * MiB, page)  # stripe 5 only
        cl.release("sparse")
        holders = region_nodes(cl, "sparse")
        meta = cl.async_client.cached_meta("sparse")
        assert meta is not None and meta.written == [(5, 6)]
    c.kill(*holders[:2])
    with c.client() as cl:
        assert cl.pread("sparse", 0, 4 * MiB) == bytes(4 * MiB)
        assert cl.pread("sparse", 20 * MiB, 4096) == page
        assert cl.pread("sparse", 60 * MiB, 4096) == bytes(4096)


def test_node_back_empty_is_rebuilt_in_place_and_waits_are_summed(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Six nodes, ec:4+2: no spare. A node back without its memory gets its own slots
    rebuilt; a node gone for good leaves slots nothing can take, said once per cause."""
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=6, rebuild_grace=1.0)
    try:
        blob = os.urandom(8 * MiB)
        with c.client() as cl:
            for name in ("a", "b", "c"):
                cl.create_region(name, 0, "ec:4+2")
                cl.pwrite(name, 0, blob)
                cl.release(name)
            before = region_nodes(cl, "a")
        restart_empty(c, before[0])
        deadline = time.monotonic() + 60
        while status(c)["status"] != "HEALTH_OK":
            assert time.monotonic() < deadline, c.logs()
            time.sleep(0.5)
        with c.client() as cl:
            assert region_nodes(cl, "a") == before
        c.kill(*before[1:3])  # two more: only the rebuilt fragments make k
        with c.client() as cl:
            assert cl.pread("a", 0, len(blob)) == blob
        c.restart(*before[1:3])
        deadline = time.monotonic() + 60
        while status(c)["status"] != "HEALTH_OK":
            assert time.monotonic() < deadline, c.logs()
            time.sleep(0.5)
        c.kill(before[3])
        deadline = time.monotonic() + 30
        lines: list[str] = []
        while time.monotonic() < deadline:
            out = c.cli("status").stdout
            lines = [x for x in out.splitlines() if "no node can take them over" in x]
            if lines:
                break
            time.sleep(0.5)
        assert len(lines) == 1, out
        assert "3 fragment slots of 3 regions" in lines[0], lines
        assert "already holds a fragment" in lines[0] and "start another" in lines[0], lines
    finally:
        c.down()
