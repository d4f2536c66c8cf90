"""Writes with nodes down: handed off to a spare node, or written degraded, or refused."""

from __future__ import annotations

import os

import pytest

import ecmem
from tests.harness import TestCluster, region_nodes

pytestmark = pytest.mark.integration
MiB = 1 << 20


def test_down_node_is_handed_off_with_a_seventh(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    c = TestCluster(tmp_path_factory.mktemp("handoff"), zk_hosts, "handoff", nodes=7)
    cl = c.client()
    try:
        cl.create_region("h", 0, "ec:4+2")
        first = os.urandom(3 * MiB)
        cl.pwrite("h", 0, first)
        before = region_nodes(cl, "h")
        spare = next(n for n in c.node_ids if n not in before)
        c.kill(before[2])
        second = os.urandom(5 * MiB)
        cl.pwrite("h", 0, second)  # fragment 2 goes to the spare node
        after = region_nodes(cl, "h")
        assert after[2] == spare and before[2] not in after
        assert cl.pread("h", 0, len(second)) == second
        # Fully durable: any two more nodes of the new placement can go.
        c.kill(after[0], after[2])
        assert cl.pread("h", 0, len(second)) == second
    finally:
        cl.close()
        c.down()


def test_degraded_write_with_no_spare_then_refused(fresh_cluster: TestCluster) -> None:
    cl = fresh_cluster.client()
    try:
        cl.create_region("d", 0, "ec:4+2")  # min_durable defaults to K+1 = 5
        cl.pwrite("d", 0, os.urandom(MiB))
        nodes = region_nodes(cl, "d")
        fresh_cluster.kill(nodes[5])
        data = os.urandom(2 * MiB)
        cl.pwrite("d", 0, data)  # 5 of 6 fragments: degraded, not refused
        assert region_nodes(cl, "d")[5] == ""  # the old holder can never be trusted again
        assert cl.pread("d", 0, len(data)) == data
        fresh_cluster.kill(nodes[0])  # one more loss: 4 left, still readable
        assert cl.pread("d", 0, len(data)) == data
        r = fresh_cluster.cli("status", "--json")
        assert r.returncode == 1 and "REGION_DEGRADED" in r.stdout
        with pytest.raises(ecmem.NodeUnavailable) as err:
            cl.pwrite("d", 0, b"too few nodes")  # 4 < 5 fragments
        # 4 fragments staged are k: the next writer's recovery may keep it, and says so.
        assert "5 needed" in str(err.value) and "next writer keeps it" in str(err.value)
    finally:
        cl.close()


def test_min_durable_is_validated(cluster: TestCluster) -> None:
    cl = cluster.client()
    try:
        with pytest.raises(ecmem.ConfigError, match="min_durable 3 must be between 4"):
            cl.create_region("md", 0, "ec:4+2", min_durable=3)
        with pytest.raises(ecmem.ConfigError, match="between 4 .* and 6"):
            cl.create_region("md", 0, "ec:4+2", min_durable=7)
    finally:
        cl.close()
