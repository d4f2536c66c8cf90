"""A cluster of "hosts" in network namespaces: a 3-server ZooKeeper ensemble,
storage nodes and a coordinator, each in a namespace of its own; the test's
clients run in the root namespace. Every process is started here and ended
here, by its id; ``close`` leaves no process, namespace or link behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ecmem import wire
from ecmem.framedecoder import FrameDecoder
from ecmem.localprocs import ZK_JAR, ZK_MAIN

from .net import Net
from .target import wait_gone, wait_nodes

ZK_PORT = 2181
NODE_PORT = 7000


@dataclass
class Proc:
    host: str
    args: list[str]
    log: Path
    pid: int = 0
    paused: bool = False


@dataclass
class ChaosCluster:
    root: Path
    run: str
    subnet: int
    nodes: int = 7
    capacity: str = "2GiB"
    grace: float = 2.0
    session_timeout: float = 4.0
    persist: bool = False  # nodes mirror their fragments to disk and come back with them
    broken: str = ""  # a deliberately broken build (run.BREAKS); no-fencing reaches the nodes
    net: Net = field(init=False)
    cluster: str = field(init=False)  # the ecmem cluster's name in ZooKeeper
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.cluster = f"chaos-{self.run}"
        self.net = Net(self.run, self.subnet)
        try:
            for i in range(1, 4):
                self.net.add(f"zk{i}", 10 + i)
            for i in range(1, self.nodes + 1):
                self.net.add(f"n{i}", 20 + i)
            self.net.add("coord", 5)
            self.net.add("client", 6)  # client hosts the nemesis can cut off
            self.net.add("client2", 7)
        except BaseException:
            self.net.close()
            raise

    # -- addresses ------------------------------------------------------------------

    @property
    def zk(self) -> str:
        return ",".join(f"{self.net.hosts[f'zk{i}']}:{ZK_PORT}" for i in range(1, 4))

    @property
    def node_hosts(self) -> list[str]:
        return [f"n{i}" for i in range(1, self.nodes + 1)]

    @property
    def control_hosts(self) -> list[str]:
        return ["coord", "zk1", "zk2", "zk3"]

    # -- processes --------------------------------------------------------------------

    def _spawn(self, name: str, host: str, args: list[str]) -> Proc:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        p = Proc(host, args, log)
        self.procs[name] = p
        self.start(name)
        return p

    def start(self, name: str) -> None:
        p = self.procs[name]
        with open(p.log, "ab") as out:
            proc = subprocess.Popen(
                self.net.command(p.host, p.args),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.root,
            )
        p.pid, p.paused = proc.pid, False

    def kill(self, name: str) -> None:
        p = self.procs[name]
        if p.pid:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # ip netns exec execs: the group is ours
            except ProcessLookupError:
                pass
            try:
                os.waitpid(p.pid, 0)
            except ChildProcessError:
                pass
            p.pid = 0

    def pause(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGSTOP)
        self.procs[name].paused = True

    def resume(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGCONT)
        self.procs[name].paused = False

    # -- start ------------------------------------------------------------------------

    def up(self) -> None:
        java = shutil.which("java")
        if java is None or not Path(ZK_JAR).exists():
            raise RuntimeError("ZooKeeper is not installed: run 'make setup'")
        servers = "\n".join(f"server.{i}={self.net.hosts[f'zk{i}']}:2888:3888" for i in range(1, 4))
        for i in range(1, 4):
            zdir = self.root / f"zk{i}"
            (zdir / "data").mkdir(parents=True, exist_ok=True)
            (zdir / "data" / "myid").write_text(f"{i}\n")
            (zdir / "zoo.cfg").write_text(
                f"tickTime=500\ninitLimit=20\nsyncLimit=6\ndataDir={zdir / 'data'}\n"
                f"clientPort={ZK_PORT}\nclientPortAddress={self.net.hosts[f'zk{i}']}\n"
                "maxClientCnxns=0\nadmin.enableServer=false\n"
                "4lw.commands.whitelist=ruok,srvr,mntr\nminSessionTimeout=1000\n"
                f"maxSessionTimeout=30000\n{servers}\n"
            )
            self._spawn(
                f"zk{i}",
                f"zk{i}",
                [
                    java,
                    "-Xmx256m",
                    "-cp",
                    f"/etc/zookeeper/conf:{ZK_JAR}",
                    ZK_MAIN,
                    str(zdir / "zoo.cfg"),
                ],
            )
        self.wait_zk()
        for host in self.node_hosts:
            self._spawn(host, host, self.node_args(host))
        self._spawn(
            "coord",
            "coord",
            [
                sys.executable,
                "-m",
                "coordinator",
                "--zk",
                self.zk,
                "--cluster",
                self.cluster,
                "--rebuild-grace",
                str(self.grace),
                "--interval",
                "0.5",
                "--scrub-interval",
                "0",
            ],
        )
        self.wait_nodes(self.node_hosts)

    def node_args(self, host: str) -> list[str]:
        return (
            [
                sys.executable,
                "-m",
                "storage_node",
                "--id",
                host,
                "--zk",
                self.zk,
                "--cluster",
                self.cluster,
                "--listen",
                f"{self.net.hosts[host]}:{NODE_PORT}",
                "--capacity",
                self.capacity,
                "--failure-domain",
                host,
                "--session-timeout",
                str(self.session_timeout),
                "--allow-debug",
            ]
            + (["--data-dir", str(self.root / f"{host}-data")] if self.persist else [])
            + (["--unsafe-no-fencing"] if self.broken == "no-fencing" else [])
        )

    def wait_zk(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for i in range(1, 4):
            addr = self.net.hosts[f"zk{i}"]
            while not _zk_serving(addr):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ZooKeeper zk{i} did not serve in {timeout:.0f}s")
                time.sleep(0.3)

    def wait_nodes(self, hosts: list[str], timeout: float = 60.0) -> None:
        wait_nodes(self.zk, self.cluster, hosts, timeout)

    def wait_gone(self, hosts: list[str], timeout: float = 30.0) -> None:
        wait_gone(self.zk, self.cluster, hosts, timeout)

    def region(self, name: str) -> str:
        return name  # the cluster is the run's own

    def close(self) -> None:
        for name in list(self.procs):
            p = self.procs[name]
            if p.paused and p.pid:
                try:
                    os.killpg(p.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            self.kill(name)
        self.net.close()


def ask(address: str, msg: wire.Message) -> wire.Message:
    """One request straight to a storage node at host:port, and its reply."""
    host, port = address.rsplit(":", 1)
    dec = FrameDecoder()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(wire.encode_bytes(msg, 1))
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError(f"node at {address} closed the connection")
            got = dec.feed(chunk)
            if got:
                return got[0][1]


def _zk_serving(address: str) -> bool:
    try:
        with socket.create_connection((address, ZK_PORT), timeout=1) as s:
            s.sendall(b"srvr")
            return b"Mode:" in s.recv(4096)
    except OSError:
        return False
