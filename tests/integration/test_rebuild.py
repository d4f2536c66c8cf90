"""Self-healing: a lost node's fragments are rebuilt elsewhere, by the coordinator alone."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_cluster
from tests.harness import TestCluster, region_nodes

MiB = 1024 * 1024


def status(c: TestCluster) -> dict:  # type: ignore[type-arg]
    out = c.cli("status", "--json")
    assert out.returncode in (0, 1, 2), out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def wait_health(c: TestCluster, want: str, timeout: float) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    last: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        last = status(c)
        if last["status"] == want:
            return last
        time.sleep(0.5)
    raise AssertionError(f"health never became {want} in {timeout}s; last: {last}")


@pytest.fixture()
def cluster7(zk_hosts: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=7, rebuild_grace=1.5)
    yield c
    c.down()


def test_lost_node_is_rebuilt_then_two_more_can_die(cluster7: TestCluster) -> None:
    c = cluster7
    data = os.urandom(256 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    with c.client() as cl:
        cl.create_region("big", len(data), "ec:4+2")
        cl.pwrite("big", 0, data)
        holders = region_nodes(cl, "big")
    del data
    victim = holders[0]
    c.kill(victim)
    took = time.monotonic()
    after = wait_health(c, "HEALTH_OK", 90)
    print(f"rebuilt in {time.monotonic() - took:.1f}s after the node was gone")
    assert after["nodes"]["up"] == 6
    with c.client() as cl:
        meta = cl._run(cl.async_client.region_meta("big"))
        for slab in meta.slabs:
            assert victim not in [n for n, _ in slab]
            assert all(n for n, _ in slab)
        assert not meta.partial
        survivors = [n for n in region_nodes(cl, "big") if n != victim]
    c.kill(*survivors[:2])
    with c.client() as cl:
        assert hashlib.sha256(cl.pread("big", 0, 256 * MiB)).hexdigest() == digest


def test_node_back_within_grace_causes_no_rebuild(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=7, rebuild_grace=6.0, persist=True)
    try:
        data = os.urandom(8 * MiB)
        with c.client() as cl:
            cl.create_region("r", len(data), "ec:4+2")
            cl.pwrite("r", 0, data)
            before = region_nodes(cl, "r")
        victim = before[1]
        c.kill(victim)
        c.restart(victim)
        c.local.wait_registered(c.local.load(), 30, only=[victim])
        time.sleep(8.0)  # past the grace delay: a rebuild would have started by now
        with c.client() as cl:
            assert region_nodes(cl, "r") == before
            assert cl.pread("r", 0, len(data)) == data
        log = (c.local.logs / "coordinator.log").read_text()
        assert "rebuilt on" not in log
        assert wait_health(c, "HEALTH_OK", 10)
    finally:
        c.down()
