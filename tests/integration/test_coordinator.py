"""The coordinator's own duties: background scrub on a timer, its Prometheus metrics
(rebuild and scrub figures that move), health detail, and structured logs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from ecmem import wire
from tests.conftest import make_cluster
from tests.harness import TestCluster, scrape
from tests.integration.test_rebuild import status, wait_health

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


def leader(c: TestCluster) -> dict:  # type: ignore[type-arg]
    coords = status(c)["coordinators"]
    assert coords and coords[0]["leader"], coords
    assert coords[0]["metrics"], coords
    return coords[0]  # type: ignore[no-any-return]


def test_background_scrub_repairs_and_metrics_show_scrub_and_rebuild(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed here (apt-get install curl)")
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=7, rebuild_grace=1.5, scrub_interval=4)
    try:
        data = os.urandom(8 * MiB)
        with c.client() as cl:
            cl.create_region("bg/ec", len(data), "ec:4+2", chunk=256 * 1024)
            cl.pwrite("bg/ec", 0, data)
            meta = cl.region_meta("bg/ec")
        lead = leader(c)
        deadline = time.monotonic() + 20  # the leader's view of the nodes is a pass old
        while (before := scrape(f"http://{lead['metrics']}/metrics"))[
            'ecmem_cluster_nodes{state="up"}'
        ] != 7:
            assert time.monotonic() < deadline, before
            time.sleep(0.3)
        assert before["ecmem_coordinator_leader"] == 1
        assert before["ecmem_cluster_health"] == 0

        injected = {(0, 1), (3, 5)}  # (stripe, fragment): a data and a parity fragment
        for stripe, index in injected:
            node = meta.slabs[stripe // meta.slab_stripes][index][0]
            reply = c.ask(node, wire.Corrupt(meta.id, stripe, index, "flip", 100))
            assert isinstance(reply, wire.Ok), reply
        since = time.time()
        deadline = time.monotonic() + 60
        while True:
            scrub = status(c).get("scrub", {})
            if float(scrub.get("finished", 0)) > since and scrub.get("found", 0) >= 2:
                break
            assert time.monotonic() < deadline, f"no background scrub found the damage: {scrub}"
            time.sleep(0.5)
        assert scrub["unrepaired"] == [], scrub
        after = scrape(f"http://{lead['metrics']}/metrics")
        assert after['ecmem_scrub_findings_total{problem="checksum"}'] >= 2, after
        assert after["ecmem_scrub_repaired_total"] >= 2
        assert after["ecmem_scrub_bytes_total"] > 0
        assert after["ecmem_scrub_last_finished_seconds"] > since
        clean = c.cli("scrub", "bg/ec", "--json")
        assert clean.returncode == 0 and json.loads(clean.stdout)["findings"] == [], clean.stdout

        c.kill("node-1")
        wait_health(c, "HEALTH_OK", 90)
        deadline = time.monotonic() + 15  # the leader's health passes run every 2 s
        while (rebuilt := scrape(f"http://{lead['metrics']}/metrics"))[
            'ecmem_cluster_nodes{state="out"}'
        ] != 1:
            assert time.monotonic() < deadline, rebuilt
            time.sleep(0.3)
        assert rebuilt["ecmem_rebuild_bytes_total"] > 0, rebuilt
        assert rebuilt["ecmem_rebuild_slots_total"] >= 1
        with c.client() as cl:
            assert cl.pread("bg/ec", 0, len(data)) == data

        detail = c.cli("health", "detail")
        assert detail.returncode == 0, detail.stdout + detail.stderr
        assert "HEALTH_OK" in detail.stdout and "(leader)" in detail.stdout
        assert lead["metrics"] in detail.stdout
        assert "last full scrub" in detail.stdout
    finally:
        c.down()


def test_status_warns_when_no_coordinator_runs(fresh_cluster: TestCluster) -> None:
    c = fresh_cluster
    assert status(c)["status"] == "HEALTH_OK"
    pid = c.state.coordinator_pid
    os.kill(pid, 15)
    deadline = time.monotonic() + 15
    while status(c)["coordinators"]:
        assert time.monotonic() < deadline, "the coordinator's record outlived it"
        time.sleep(0.2)
    st = status(c)
    assert st["status"] == "HEALTH_WARN" and "NO_COORDINATOR" in st["checks"], st


def test_json_logs_name_region_slab_and_node() -> None:
    code = (
        "import logging\n"
        "from ecmem.logs import setup_logging, where\n"
        "setup_logging('INFO', 'coordinator c1', 'json')\n"
        "logging.getLogger('coordinator.rebuild').warning("
        "'region %s slab %d: rebuilt', 'r1', 3, extra=where('r1', 3, 2, 'node-4'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    record = json.loads(out.stderr.strip().splitlines()[-1])
    assert record["message"] == "region r1 slab 3: rebuilt"
    assert record["level"] == "WARNING" and record["who"] == "coordinator c1"
    assert (record["region"], record["slab"], record["fragment"], record["node"]) == (
        "r1",
        3,
        2,
        "node-4",
    )
