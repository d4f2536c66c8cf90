"""A real cluster for tests: storage-node processes against a real ZooKeeper."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import ecmem
from chaos.cluster import ask
from ecmem import wire
from ecmem.localcluster import ClusterState, LocalCluster, NodeProc
from ecmem.meta.catalog import MetadataStore, connect_zk
from ecmem.meta.model import NodeInfo

SESSION_TIMEOUT = 2.0


class TestCluster:
    __test__ = False  # not a test class

    def __init__(
        self,
        state_dir: Path,
        zk: str,
        name: str,
        nodes: int = 6,
        capacity: str = "1GiB",
        persist: bool = False,
        rebuild_grace: float = 30.0,
        scrub_interval: float = 7 * 86400.0,
        session_timeout: float = SESSION_TIMEOUT,
    ) -> None:
        self.local = LocalCluster(state_dir)
        self.zk = zk
        self.name = name
        self.state = self.local.up(
            nodes,
            capacity,
            cluster=name,
            zk=zk,
            persist=persist,
            allow_debug=True,
            session_timeout=session_timeout,
            rebuild_grace=rebuild_grace,
            scrub_interval=scrub_interval,
        )

    @property
    def node_ids(self) -> list[str]:
        return sorted(self.state.nodes, key=lambda n: int(n.split("-")[1]))

    def client(self) -> ecmem.Client:
        return ecmem.connect(self.zk, cluster=self.name)

    @contextlib.contextmanager
    def meta(self) -> Iterator[MetadataStore]:
        md = MetadataStore(connect_zk(self.zk), self.name)
        try:
            yield md
        finally:
            md.zk.stop()
            md.zk.close()

    def live(self) -> dict[str, NodeInfo]:
        with self.meta() as md:
            return md.live_nodes()

    def all_nodes(self) -> dict[str, NodeInfo]:
        with self.meta() as md:
            return md.all_nodes()

    def pid(self, node_id: str) -> int:
        return self.local.load().nodes[node_id].pid

    def kill(self, *node_ids: str, wait_gone: bool = True) -> None:
        for n in node_ids:
            self.local.kill_node(n, signal.SIGKILL)
        if wait_gone:
            self.wait_down(*node_ids)

    def wait_down(self, *node_ids: str, timeout: float = SESSION_TIMEOUT * 3 + 5) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            live = self.live()
            if not any(n in live for n in node_ids):
                return time.monotonic() - start
            time.sleep(0.1)
        raise AssertionError(f"nodes {node_ids} still registered after {timeout}s")

    def restart(self, *node_ids: str) -> None:
        for n in node_ids:
            self.local.restart_node(n)
        self.state = self.local.load()

    def add_node(self, capacity: int | None = None, data_dir: str = "") -> str:
        state = self.local.load()
        node_id = f"node-{len(state.nodes) + 1}"
        cap = capacity if capacity is not None else next(iter(state.nodes.values())).capacity
        state.nodes[node_id] = NodeProc(node_id, capacity=cap, data_dir=data_dir)
        self.local.start_node(state, state.nodes[node_id])
        self.local.save(state)
        self.local.wait_registered(state, 30, only=[node_id])
        self.local.save(state)
        self.state = state
        return node_id

    def ask(self, node_id: str, msg: wire.Message) -> wire.Message:
        """Send one request straight to a node and return its reply."""
        return ask(self.live()[node_id].address, msg)

    def fragments(self, node_id: str, region_id: str = "") -> list[list[object]]:
        """The committed fragments a node holds (of one region, or of all)."""
        reply = self.ask(node_id, wire.List(region_id, 0))
        assert isinstance(reply, wire.Listing), reply
        return reply.entries

    def signal(self, node_id: str, sig: int) -> None:
        os.kill(self.pid(node_id), sig)

    def logs(self, tail: int = 40) -> str:
        out = []
        for f in sorted(self.local.logs.glob("*.log")):
            lines = f.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"==== {f.name} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(out)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the ecmem command line against this cluster."""
        return run_cli(*args, zk=self.zk, cluster=self.name)

    def down(self) -> None:
        self.local.down()


def run_cli(*args: str, zk: str, cluster: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ECMEM_ZK": zk, "ECMEM_CLUSTER": cluster}
    return subprocess.run(
        [sys.executable, "-m", "ecmem.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=Path(__file__).parents[1],
    )


def region_nodes(cl: ecmem.Client, name: str, slab: int = 0) -> list[str]:
    """The nodes holding a slab of a region, by fragment index ("" for a vacant slot)."""
    meta = cl.region_meta(name)
    return [n for n, _ in meta.slabs[slab]]


def shared_zookeeper(state_dir: Path) -> tuple[LocalCluster, ClusterState]:
    lc = LocalCluster(state_dir)
    return lc, lc.start_zookeeper()


def scrape(url: str) -> dict[str, float]:
    """The ecmem_ metrics a Prometheus endpoint serves, fetched with curl."""
    out = subprocess.run(["curl", "-sf", url], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    values: dict[str, float] = {}
    for line in out.stdout.splitlines():
        m = re.match(r"^(ecmem_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
        if m:
            values[m.group(1)] = float(m.group(2))
    return values
