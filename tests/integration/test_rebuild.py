"""Self-healing: a lost node's fragments are rebuilt elsewhere, by the coordinator alone."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
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
        meta = cl.region_meta("big")
        for slab in meta.slabs.values():
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


def leader_pid(c: TestCluster) -> int:
    with c.meta() as md:
        contenders = md.zk.Election(md.paths.election).contenders()
    assert contenders, "no coordinator is running"
    return int(str(contenders[0]).rsplit("-", 1)[1])


def progress(c: TestCluster) -> dict:  # type: ignore[type-arg]
    from ecmem.meta.records import Records

    with c.meta() as md:
        return Records(md.zk, md.paths).progress()


def test_leader_killed_mid_rebuild_another_finishes(cluster7: TestCluster) -> None:
    c = cluster7
    spare = c.local.spawn_coordinator(c.local.load(), "coordinator-2.log")
    try:
        data = os.urandom(256 * MiB)
        digest = hashlib.sha256(data).hexdigest()
        with c.client() as cl:
            cl.create_region("big", len(data), "ec:4+2", slab_size="4MiB")
            cl.pwrite("big", 0, data)
            victim = region_nodes(cl, "big")[2]
        del data
        first = leader_pid(c)
        assert first != spare
        c.kill(victim)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = progress(c)
            if p.get("state") == "running" and 0 < p.get("slots_done", 0) < p["slots_total"]:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"never saw the rebuild under way: {progress(c)}")
        os.kill(first, signal.SIGKILL)
        print(f"killed leader {first} at {p['slots_done']}/{p['slots_total']} slots")
        wait_health(c, "HEALTH_OK", 120)
        assert leader_pid(c) == spare
        with c.client() as cl:
            meta = cl.region_meta("big")
            assert all(n and n != victim for slab in meta.slabs.values() for n, _ in slab)
            survivors = [n for n in region_nodes(cl, "big", 5)]
        c.kill(*survivors[:2])
        with c.client() as cl:
            assert hashlib.sha256(cl.pread("big", 0, 256 * MiB)).hexdigest() == digest
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(spare, signal.SIGKILL)


def test_rebuild_cli_killed_and_rerun_completes(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A long grace: only the operator's request starts this rebuild.
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=7, rebuild_grace=600)
    try:
        _rebuild_cli_killed_and_rerun(c)
    finally:
        c.down()


def _rebuild_cli_killed_and_rerun(c: TestCluster) -> None:
    data = os.urandom(64 * MiB)
    with c.client() as cl:
        cl.create_region("r", len(data), "ec:4+2", chunk=256 * 1024, slab_size="2MiB")
        cl.pwrite("r", 0, data)
        victim = region_nodes(cl, "r")[0]
    c.kill(victim)
    time.sleep(2)
    assert json.loads(c.cli("status", "--json").stdout)["stripes"]["degraded"] > 0
    env = {**os.environ, "ECMEM_ZK": c.zk, "ECMEM_CLUSTER": c.name}
    cmd = [sys.executable, "-m", "ecmem.cli.main", "rebuild", "--node", victim, "--wait"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    first.kill()
    first.wait()
    again = c.cli("rebuild", "--node", victim, "--wait", "--json", "--timeout", "120")
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["slots_left"] == 0
    with c.client() as cl:
        meta = cl.region_meta("r")
        assert all(n and n != victim for slab in meta.slabs.values() for n, _ in slab)
        assert cl.pread("r", 0, len(data)) == data
    assert c.cli("rebuild", "--node", "node-99").returncode == 2


def test_rebuild_of_a_node_just_killed_waits_for_its_session_and_runs(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``kill -9`` a node, then at once ``ecmem rebuild --node X --wait``: ZooKeeper
    still lists X for its session timeout; the command must tell it is dead (no
    heartbeats), never claim it is up, and rebuild once the listing goes."""
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=7, rebuild_grace=600, session_timeout=6.0)
    try:
        data = os.urandom(16 * MiB)
        with c.client() as cl:
            cl.create_region("r", len(data), "ec:4+2", chunk=256 * 1024, slab_size="2MiB")
            cl.pwrite("r", 0, data)
            victim = region_nodes(cl, "r")[0]
        c.kill(victim, wait_gone=False)
        assert victim in c.live(), "the test needs the node still listed"
        out = c.cli("rebuild", "--node", victim, "--wait", "--json", "--timeout", "120")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "answers no heartbeats" in out.stderr and "is up" not in out.stderr, out.stderr
        assert json.loads(out.stdout)["slots_left"] == 0
        with c.client() as cl:
            meta = cl.region_meta("r")
            assert all(n and n != victim for slab in meta.slabs.values() for n, _ in slab)
            assert cl.pread("r", 0, len(data)) == data
    finally:
        c.down()


def test_node_back_after_grace_never_serves_stale_fragments(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=7, rebuild_grace=1.0, persist=True)
    try:
        old = os.urandom(8 * MiB)
        new = os.urandom(8 * MiB)
        with c.client() as cl:
            cl.create_region("r", len(old), "ec:4+2", chunk=256 * 1024, slab_size="2MiB")
            cl.pwrite("r", 0, old)
            rid = cl.region_meta("r").id
            victim = region_nodes(cl, "r")[0]
        c.kill(victim)
        wait_health(c, "HEALTH_OK", 60)
        with c.client() as cl:
            cl.pwrite("r", 0, new)  # the victim's copies are now stale twice over
        c.restart(victim)
        c.local.wait_registered(c.local.load(), 30, only=[victim])
        deadline = time.monotonic() + 30
        while c.fragments(victim, rid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not c.fragments(victim, rid), "stale fragments were not discarded"
        others = [n for n in c.node_ids if n != victim]
        with c.client() as cl:
            assert victim not in {n for slab in cl.region_meta("r").slabs.values() for n, _ in slab}
            c.kill(*[n for n in region_nodes(cl, "r") if n in others][:2])
            assert cl.pread("r", 0, len(new)) == new
    finally:
        c.down()


def test_fragments_whose_holders_left_the_placement_are_rebuilt_from(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A node that misses a commit round leaves the placement (its slot goes vacant) but
    keeps its fragments. When more slots than the policy tolerates went that way, one at
    a time (as under a long thrash), the placement alone has too few fragments: the
    rebuilder must find the rest on the nodes that left, not give the stripes up."""
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=7, rebuild_grace=600)
    try:
        data = os.urandom(8 * MiB)
        with c.client() as cl:
            cl.create_region("r", len(data), "ec:4+2", chunk=256 * 1024)
            cl.pwrite("r", 0, data)
            cl.release("r")
        with c.meta() as md:

            def vacate(m: object) -> object:
                for i in (0, 2, 4):  # as three missed commit rounds would have left them
                    m.slabs[0][i] = ("", "")  # type: ignore[attr-defined]
                return m

            before = md.get_region("r")[0]
            md.update_region("r", vacate)  # type: ignore[arg-type]
        left = {before.slabs[0][i][0] for i in (0, 2, 4)}
        wait_health(c, "HEALTH_OK", 60)
        with c.client() as cl:
            meta = cl.region_meta("r")
            assert all(n for n, _ in meta.slabs[0])
            assert cl.pread("r", 0, len(data)) == data
            # The copies on nodes that left the slab are garbage once it is whole again.
            for node in left - {n for n, _ in meta.slabs[0]}:
                deadline = time.monotonic() + 30
                while c.fragments(node, meta.id):
                    assert time.monotonic() < deadline, f"{node} still holds copies"
                    time.sleep(0.5)
            c.kill(*region_nodes(cl, "r")[:2])  # and redundancy is real
            assert cl.pread("r", 0, len(data)) == data
    finally:
        c.down()
