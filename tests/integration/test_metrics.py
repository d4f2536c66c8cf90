"""A node's Prometheus endpoint, fetched with curl, shows metrics that move with a workload."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.harness import TestCluster, scrape

pytestmark = pytest.mark.integration


def test_node_metrics_change_with_a_workload(cluster: TestCluster) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed here (apt-get install curl)")
    nodes = json.loads(cluster.cli("nodes", "--json").stdout)["nodes"]
    node = next(n for n in nodes if n["state"] == "up")
    assert node["metrics"].startswith("http://")
    before = scrape(node["metrics"])
    for name in ("ecmem_node_bytes_stored", "ecmem_node_fragments", "ecmem_node_capacity_bytes"):
        assert name in before, sorted(before)
    with cluster.client() as cl:
        cl.create_region("metrics/r", 0, "rep:6")  # every node holds a copy
        cl.pwrite("metrics/r", 0, b"m" * (1 << 20))
        assert cl.pread("metrics/r", 0, 10) == b"m" * 10
        after = scrape(node["metrics"])
        cl.delete_region("metrics/r")
    assert after["ecmem_node_bytes_stored"] >= before["ecmem_node_bytes_stored"] + (1 << 20)
    assert after["ecmem_node_fragments"] > before["ecmem_node_fragments"]
    put = 'ecmem_node_requests_total{kind="Put"}'
    assert after.get(put, 0) > before.get(put, 0)
    assert 'ecmem_node_request_seconds_count{kind="Put"}' in after
