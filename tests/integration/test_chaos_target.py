"""The chaos suite against a deployment it did not make (--target): a cluster this
test starts with shell scripts, as an operator's own tooling would, driven only
through the commands of a target file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ecmem
from ecmem.meta.catalog import MetadataStore, connect_zk

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NODES = [f"n{i}" for i in range(1, 9)]

START = """#!/bin/sh
# start-node.sh NAME: one storage node in the background, its pid in NAME.pid
cd {root}
{python} -m storage_node --id "$1" --zk {zk} --cluster {cluster} --listen 127.0.0.1:0 \\
    --capacity 1GiB --failure-domain "$1" --session-timeout 2 --allow-debug \\
    >> {dir}/"$1".log 2>&1 < /dev/null &
echo $! > {dir}/"$1".pid
"""


def _pids(d: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in d.glob("*.pid") if p.read_text().strip()}


def test_kill_during_write_against_a_deployment_of_ones_own(zk_hosts: str, tmp_path: Path) -> None:
    d = tmp_path / "deploy"
    d.mkdir()
    cluster = f"own{os.getpid()}"
    start = d / "start-node.sh"
    start.write_text(
        START.format(root=ROOT, python=sys.executable, zk=zk_hosts, cluster=cluster, dir=d)
    )
    pid = f"$(cat {d}/{{name}}.pid)"
    target = tmp_path / "target.toml"
    target.write_text(
        f'zk = "{zk_hosts}"\ncluster = "{cluster}"\nsession_timeout = 2.0\nrebuild_grace = 2.0\n'
        "[commands]\n"
        f'kill = "kill -KILL {pid}"\nstart = "sh {start} {{name}}"\n'
        f'pause = "kill -STOP {pid}"\nresume = "kill -CONT {pid}"\n'
        "[nodes]\n" + "".join(f'{n} = "127.0.0.1"\n' for n in NODES)
    )
    coord = None
    try:
        for n in NODES:
            subprocess.run(["sh", str(start), n], check=True)
        coord = subprocess.Popen(
            [sys.executable, "-m", "coordinator", "--zk", zk_hosts, "--cluster", cluster,
             "--rebuild-grace", "2", "--interval", "0.5", "--scrub-interval", "0"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(d / "coord.log", "ab"),
        )  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "chaos.run", "--target", str(target), "--seed", "2",
             "--mib", "48", "--out", str(tmp_path), "--scenario", "kill-during-write",
             "--scenario", "partition"],
            capture_output=True, text=True, timeout=600, cwd=ROOT,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "SKIP partition" in out.stdout  # it needs namespaced hosts
        report = json.loads((tmp_path / "kill-during-write-seed2.json").read_text())
        assert report["passed"] and report["numbers"]["acknowledged"] == 12
        assert [f["kind"] for f in report["faults"]] == ["kill"] * 4
        # Left as found: the 4 killed nodes restarted by the target's own command, the
        # scenario's region deleted.
        zk = connect_zk(zk_hosts, timeout=20)
        try:
            md = MetadataStore(zk, cluster)
            deadline = time.monotonic() + 30
            while set(md.live_nodes()) != set(NODES):
                assert time.monotonic() < deadline, sorted(md.live_nodes())
                time.sleep(0.2)
        finally:
            zk.stop()
            zk.close()
        with ecmem.connect(zk_hosts, cluster=cluster) as cl:
            assert cl.list_regions() == []
    finally:
        if coord is not None:
            coord.kill()
            coord.wait()
        for p in _pids(d).values():
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_bad_target_file_is_named(tmp_path: Path) -> None:
    target = tmp_path / "t.toml"
    target.write_text('zk = "h:2181"\ncluster = "c"\n[commands]\nkill = "true"\n[nodes]\n')
    out = subprocess.run(
        [sys.executable, "-m", "chaos.run", "--target", str(target)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 2
    assert "[commands] lacks start, pause, resume" in out.stderr, out.stderr
