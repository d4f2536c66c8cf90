"""ecmem drain: every fragment moves off a node with full redundancy kept, reads go on."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import make_cluster
from tests.harness import TestCluster, region_nodes

MiB = 1024 * 1024
REGIONS = {"d/ec42": "ec:4+2", "d/rep3": "rep:3", "d/ec33": "ec:3+3"}
K = {"ec:4+2": 4, "rep:3": 1, "ec:3+3": 3}
CHUNK = 256 * 1024


@pytest.fixture()
def cluster7(zk_hosts: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=7)
    yield c
    c.down()


def test_drain_moves_everything_off_while_reads_go_on(cluster7: TestCluster) -> None:
    c = cluster7
    contents = {name: os.urandom(40 * MiB) for name in REGIONS}
    with c.client() as cl:
        for name, policy in REGIONS.items():
            cl.create_region(
                name, len(contents[name]), policy, chunk=CHUNK, slab_size=8 * K[policy] * CHUNK
            )
            cl.pwrite(name, 0, contents[name])
        ids = {name: cl.region_meta(name).id for name in REGIONS}
        everywhere = set(c.node_ids)
        for name in REGIONS:
            everywhere &= set(region_nodes(cl, name))
    assert everywhere, "no node holds fragments of every region"
    victim = sorted(everywhere)[0]

    dry = c.cli("drain", victim, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] and plan["slots"] > 0 and set(plan["regions"]) == set(REGIONS)

    failures: list[str] = []
    reads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        with c.client() as rcl:
            while not stop.is_set():
                for name, data in contents.items():
                    off = (reads * 7 * MiB) % (len(data) - MiB)
                    try:
                        if rcl.pread(name, off, MiB) != data[off : off + MiB]:
                            failures.append(f"{name}@{off}: wrong bytes")
                    except Exception as exc:
                        failures.append(f"{name}@{off}: {exc!r}")
                    reads += 1

    t = threading.Thread(target=reader)
    t.start()
    try:
        out = c.cli("drain", victim, "--wait", "--json", "--timeout", "120")
    finally:
        stop.set()
        t.join()
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["slots_left"] == 0
    assert reads > 10 and not failures, failures[:5]

    with c.client() as cl:
        for name, data in contents.items():
            meta = cl.region_meta(name)
            for slab in meta.slabs.values():
                holders = [n for n, _ in slab]
                assert victim not in holders and all(holders)
                assert len(set(holders)) == len(holders)
            assert cl.pread(name, 0, len(data)) == data
    st = json.loads(c.cli("status", "--json").stdout)
    assert st["status"] == "HEALTH_OK", st
    assert "NODE_DRAINING" in st["checks"]  # reported, as drained, without a warning

    deadline = time.monotonic() + 30  # old copies go once readers have moved on
    while time.monotonic() < deadline:
        left = [e for e in c.fragments(victim) if e[0] in ids.values()]
        if not left:
            break
        time.sleep(0.5)
    assert not left, f"{victim} still holds {len(left)} fragments"

    running = c.cli("node", "rm", victim)
    assert running.returncode == 2 and "still running" in running.stderr
    c.kill(victim)
    rm = c.cli("node", "rm", victim, "--json")
    assert rm.returncode == 0, rm.stdout + rm.stderr
    assert victim not in c.all_nodes()
    assert json.loads(c.cli("status", "--json").stdout)["status"] == "HEALTH_OK"


def test_drain_refuses_what_it_cannot_do(cluster7: TestCluster) -> None:
    c = cluster7
    out = c.cli("drain", "node-99")
    assert out.returncode == 2 and "no node 'node-99'" in out.stderr
    with c.client() as cl:
        cl.create_region("wide", MiB, "ec:5+2")
        cl.pwrite("wide", 0, b"x" * MiB)
        holder = region_nodes(cl, "wide")[0]
    rm = c.cli("node", "rm", holder)
    assert rm.returncode == 2 and "still holds" in rm.stderr
    c.kill(c.node_ids[-1] if c.node_ids[-1] != holder else c.node_ids[-2])
    out = c.cli("drain", holder)
    assert out.returncode == 2 and "needs 7 distinct nodes" in out.stderr, out.stderr
