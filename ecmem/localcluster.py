"""A local cluster for development, demos and tests: ZooKeeper, a coordinator
and storage nodes as background processes, their state in one directory.

Every process is started here and recorded in ``cluster.json`` with its pid;
``down`` stops exactly those, after checking each pid is still ours.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecmem.meta.catalog import MetadataStore, connect_zk
from ecmem.meta.records import Records

from .errors import ClusterError, ConfigError
from .localprocs import alive, launch_zookeeper, stop, stop_all, zk_ok
from .units import format_size, parse_size

log = logging.getLogger(__name__)

DEFAULT_NODES = 6
DEFAULT_CAPACITY = "4GiB"


@dataclass
class NodeProc:
    id: str
    pid: int = 0
    capacity: int = 0
    address: str = ""
    data_dir: str = ""

    @property
    def marker(self) -> str:
        return f"--id {self.id} "


@dataclass
class ClusterState:
    zk: str = ""
    cluster: str = "default"
    zk_port: int = 0
    zk_pid: int = 0
    coordinator_pid: int = 0
    session_timeout: float = 4.0
    rebuild_grace: float = 30.0
    scrub_interval: float = 7 * 86400.0
    allow_debug: bool = False
    external_zk: bool = False  # ZooKeeper run by someone else: never started or stopped here
    nodes: dict[str, NodeProc] = field(default_factory=dict)

    @property
    def persist(self) -> bool:
        """True if every node mirrors its fragments to disk (so they outlive a stop)."""
        return bool(self.nodes) and all(n.data_dir for n in self.nodes.values())

    def to_json(self) -> str:
        data: dict[str, Any] = {k: v for k, v in self.__dict__.items() if k != "nodes"}
        data["nodes"] = {k: v.__dict__ for k, v in self.nodes.items()}
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        data = json.loads(text)
        nodes = {k: NodeProc(**v) for k, v in data.pop("nodes", {}).items()}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known}, nodes=nodes)


def up_conflicts(
    state: ClusterState,
    *,
    nodes: int | None = None,
    capacity: int | None = None,
    persist: bool | None = None,
    cluster: str | None = None,
) -> list[str]:
    """What an ``up`` asks for that an existing cluster will not get, each with what
    to do instead; empty for a new cluster or one that matches. More nodes than the
    cluster has is no conflict: ``up`` adds them."""
    if not state.nodes:
        return []
    redo = "to change it, 'ecmem down' (which deletes every region) then 'ecmem up' with it"
    out: list[str] = []
    have = len(state.nodes)
    if nodes is not None and nodes < have:
        out.append(
            f"--nodes {nodes} ignored: the cluster has {have} nodes and 'up' never removes "
            f"any; move a node's data off with 'ecmem drain NODE --wait', or {redo}"
        )
    caps = sorted({n.capacity for n in state.nodes.values()})
    if capacity is not None and caps != [capacity]:
        added = (
            f" (only nodes added now get {format_size(capacity)})" if nodes and nodes > have else ""
        )
        out.append(
            f"--capacity {format_size(capacity)} ignored for the existing nodes, which keep "
            f"{' / '.join(format_size(c) for c in caps)}{added}; {redo}"
        )
    if persist is not None and persist != state.persist:
        now = "mirror their fragments to disk" if state.persist else "keep fragments in RAM only"
        flag = "--persist" if persist else "--no-persist"
        out.append(f"{flag} ignored: the existing nodes {now}; {redo}")
    if cluster is not None and cluster != state.cluster:
        out.append(
            f"--cluster {cluster} ignored: this state directory holds cluster "
            f"{state.cluster!r}; use another --state-dir for another cluster, or {redo}"
        )
    return out


class LocalCluster:
    def __init__(self, state_dir: str | os.PathLike[str] = ".ecmem") -> None:
        self.dir = Path(state_dir).resolve()
        self.logs = self.dir / "logs"
        self.state_file = self.dir / "cluster.json"

    # -- state ------------------------------------------------------------------

    def load(self) -> ClusterState:
        try:
            return ClusterState.from_json(self.state_file.read_text())
        except FileNotFoundError:
            return ClusterState()

    def save(self, state: ClusterState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        os.replace(tmp, self.state_file)

    @property
    def zk_marker(self) -> str:
        return str(self.dir / "zookeeper" / "zoo.cfg")

    def _spawn(self, args: list[str], log_name: str) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / log_name, "ab") as out:
            proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.dir,
            )
        return proc.pid

    # -- start ------------------------------------------------------------------

    def _start_zk(self, state: ClusterState) -> None:
        if state.external_zk:
            return
        if state.zk_pid and alive(state.zk_pid, self.zk_marker) and zk_ok(state.zk_port):
            return
        zdir = self.dir / "zookeeper"
        (zdir / "data").mkdir(parents=True, exist_ok=True)
        state.zk_pid, state.zk_port = launch_zookeeper(zdir, self.logs, self._spawn)
        state.zk = f"127.0.0.1:{state.zk_port}"

    def start_zookeeper(self) -> ClusterState:
        """Only the ZooKeeper server (tests share one between many clusters)."""
        state = self.load()
        self._start_zk(state)
        self.save(state)
        return state

    def _start_coordinator(self, state: ClusterState) -> None:
        marker = f"coordinator --zk {state.zk}"
        if state.coordinator_pid and alive(state.coordinator_pid, marker):
            return
        state.coordinator_pid = self.spawn_coordinator(state, "coordinator.log")

    def spawn_coordinator(self, state: ClusterState, logname: str) -> int:
        """Start a coordinator process (one more may run beside it: one leads)."""
        return self._spawn(
            [
                sys.executable,
                "-m",
                "coordinator",
                "--zk",
                state.zk,
                "--cluster",
                state.cluster,
                "--rebuild-grace",
                str(state.rebuild_grace),
                "--interval",
                "0.5" if state.rebuild_grace < 5 else "2",
                "--scrub-interval",
                str(state.scrub_interval),
                "--metrics-port",
                "0",
            ],
            logname,
        )

    def node_args(self, state: ClusterState, node: NodeProc) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "storage_node",
            "--id",
            node.id,
            "--zk",
            state.zk,
            "--cluster",
            state.cluster,
            "--listen",
            "127.0.0.1:0",
            "--capacity",
            str(node.capacity),
            "--failure-domain",
            node.id,
            "--session-timeout",
            str(state.session_timeout),
            "--metrics-port",
            "0",
        ]
        if node.data_dir:
            args += ["--data-dir", node.data_dir]
        if state.allow_debug:
            args.append("--allow-debug")
        return args

    def start_node(self, state: ClusterState, node: NodeProc) -> None:
        node.pid = self._spawn(self.node_args(state, node), f"{node.id}.log")

    def node_alive(self, node: NodeProc) -> bool:
        return alive(node.pid, node.marker)

    def up(
        self,
        nodes: int | None = None,
        capacity: str | int | None = None,
        *,
        cluster: str = "default",
        zk: str | None = None,
        persist: bool | None = None,
        allow_debug: bool = False,
        session_timeout: float = 4.0,
        rebuild_grace: float = 30.0,
        timeout: float = 60.0,
        scrub_interval: float = 7 * 86400.0,
    ) -> ClusterState:
        """Start what is not running; harmless when everything already is.

        A new cluster gets ``nodes`` nodes (default 6) of ``capacity`` (default 4GiB)
        each, mirrored to disk under the state directory if ``persist`` (default no).
        On an existing cluster (running or stopped with its data kept), None keeps
        what it has; more ``nodes`` than it has adds nodes; :func:`up_conflicts`
        says what else was asked for and is not applied.
        """
        if nodes is not None and nodes < 1:
            raise ConfigError(f"--nodes {nodes}: a cluster needs at least one storage node")
        state = self.load()
        if persist is None:
            persist = state.persist
        if nodes is None:
            nodes = len(state.nodes) or DEFAULT_NODES
        if capacity is None:
            cap = (
                next(iter(state.nodes.values())).capacity
                if state.nodes
                else parse_size(DEFAULT_CAPACITY)
            )
        else:
            cap = parse_size(capacity)
        if not state.nodes:
            state.cluster = cluster
            state.session_timeout = session_timeout
            state.rebuild_grace = rebuild_grace
            state.scrub_interval = scrub_interval
            state.allow_debug = allow_debug
            if zk:
                state.zk, state.external_zk = zk, True
        self._start_zk(state)
        self.save(state)
        self._start_coordinator(state)
        for i in range(1, nodes + 1):
            node_id = f"node-{i}"
            if node_id not in state.nodes:
                data_dir = str(self.dir / "nodes" / node_id) if persist else ""
                state.nodes[node_id] = NodeProc(node_id, capacity=cap, data_dir=data_dir)
        for node in state.nodes.values():
            if not self.node_alive(node):
                self.start_node(state, node)
        self.save(state)
        self.wait_registered(state, timeout)
        self.save(state)
        self.wait_coordinator(state, timeout)
        return state

    def wait_coordinator(self, state: ClusterState, timeout: float = 60.0) -> None:
        """Until the coordinator has announced itself (so status counts it)."""
        zk = connect_zk(state.zk, timeout=10)
        try:
            md = MetadataStore(zk, state.cluster)
            records = Records(zk, md.paths)
            deadline = time.monotonic() + timeout
            while not any(c.get("pid") == state.coordinator_pid for c in records.coordinators()):
                if not alive(state.coordinator_pid, f"coordinator --zk {state.zk}"):
                    raise ClusterError(f"the coordinator exited at start; see {self.logs}")
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"the coordinator did not start within {timeout:.0f}s; see {self.logs}"
                    )
                time.sleep(0.1)
        finally:
            zk.stop()
            zk.close()

    def wait_registered(
        self, state: ClusterState, timeout: float = 60.0, only: list[str] | None = None
    ) -> None:
        zk = connect_zk(state.zk, timeout=10)
        try:
            md = MetadataStore(zk, state.cluster)
            deadline = time.monotonic() + timeout
            want = {k: v for k, v in state.nodes.items() if only is None or k in only}
            while True:
                live = md.live_nodes()
                pending = [n for n in want.values() if n.id not in live or live[n.id].pid != n.pid]
                for n in want.values():
                    if n.id in live:
                        n.address = live[n.id].address
                if not pending:
                    return
                dead = [n.id for n in pending if not self.node_alive(n)]
                if dead:
                    raise ClusterError(
                        f"storage nodes {', '.join(dead)} exited at start; see their logs in "
                        f"{self.logs}"
                    )
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"storage nodes {', '.join(n.id for n in pending)} did not register "
                        f"within {timeout:.0f}s; see {self.logs}"
                    )
                time.sleep(0.1)
        finally:
            zk.stop()
            zk.close()

    # -- stop -------------------------------------------------------------------

    def kill_node(self, node_id: str, sig: int = signal.SIGKILL) -> int:
        state = self.load()
        node = state.nodes.get(node_id)
        if node is None:
            raise ConfigError(f"no node {node_id} in the local cluster at {self.dir}")
        if not self.node_alive(node):
            raise ClusterError(f"node {node_id} is not running")
        os.kill(node.pid, sig)
        return node.pid

    def restart_node(self, node_id: str, timeout: float = 30.0) -> NodeProc:
        state = self.load()
        node = state.nodes[node_id]
        if not self.node_alive(node):
            self.start_node(state, node)
        self.wait_registered(state, timeout, only=[node_id])
        self.save(state)
        return node

    def down(self, *, keep_data: bool = False) -> dict[str, Any]:
        """Stop every process ``up`` started. With ``keep_data`` ZooKeeper's metadata and
        the nodes' disk mirrors (if they have them) stay for a later ``up``; without,
        the state directory's cluster is forgotten."""
        state = self.load()
        # Nodes and the coordinator at once; ZooKeeper last, as they leave it.
        procs = {n.id: (n.pid, n.marker) for n in state.nodes.values()}
        procs["coordinator"] = (state.coordinator_pid, f"coordinator --zk {state.zk}")
        gone = set(stop_all(list(procs.values())))
        stopped = [name for name, (pid, _) in procs.items() if pid in gone]
        if not state.external_zk and stop(state.zk_pid, self.zk_marker):
            stopped.append("zookeeper")
        if not keep_data:
            # Node memory is gone, so the metadata describing it must go too.
            shutil.rmtree(self.dir / "zookeeper", ignore_errors=True)
            shutil.rmtree(self.dir / "nodes", ignore_errors=True)
            self.state_file.unlink(missing_ok=True)
        return {
            "stopped": stopped,
            "state_dir": str(self.dir),
            "kept_data": keep_data,
            # Without a disk mirror a node's fragments die with its process.
            "lost_node_data": sorted(n.id for n in state.nodes.values() if not n.data_dir)
            if keep_data
            else [],
        }

    def pids(self) -> dict[str, int]:
        state = self.load()
        return {n.id: n.pid for n in state.nodes.values() if self.node_alive(n)}
