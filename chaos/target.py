"""What a scenario drives: the cluster under test, namespaced here or a user's own.

A scenario needs the cluster's ZooKeeper and name, its storage hosts, a way to
kill, restart, pause and resume each host by name, and a scratch directory for
histories and logs. ChaosCluster (chaos/cluster.py) provides it with network
namespaces on this machine; RemoteCluster (chaos/remote.py) with the commands
of a target file, for a deployment the suite did not make.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol


class Target(Protocol):
    @property
    def zk(self) -> str: ...  # ZooKeeper connection string

    @property
    def cluster(self) -> str: ...  # the ecmem cluster's name

    @property
    def root(self) -> Path: ...  # histories and logs of this run

    @property
    def session_timeout(self) -> float: ...  # the storage nodes' ZooKeeper session timeout

    @property
    def grace(self) -> float: ...  # the coordinator's rebuild grace

    @property
    def node_hosts(self) -> list[str]: ...

    @property
    def control_hosts(self) -> list[str]: ...  # coordinators, ZooKeeper servers

    def region(self, name: str) -> str: ...  # the name a scenario's region gets

    def kill(self, host: str) -> None: ...

    def start(self, host: str) -> None: ...

    def pause(self, host: str) -> None: ...

    def resume(self, host: str) -> None: ...

    def wait_nodes(self, hosts: list[str], timeout: float = 60.0) -> None: ...

    def wait_gone(self, hosts: list[str], timeout: float = 30.0) -> None: ...


def wait_nodes(zk_hosts: str, cluster: str, hosts: list[str], timeout: float = 60.0) -> None:
    """Until ZooKeeper lists every one of ``hosts``' nodes as live."""
    _wait(zk_hosts, cluster, hosts, timeout, live=True)


def wait_gone(zk_hosts: str, cluster: str, hosts: list[str], timeout: float = 30.0) -> None:
    """Until ZooKeeper no longer lists the hosts' nodes as live."""
    _wait(zk_hosts, cluster, hosts, timeout, live=False)


def _wait(zk_hosts: str, cluster: str, hosts: list[str], timeout: float, live: bool) -> None:
    from ecmem.meta.catalog import MetadataStore, connect_zk

    zk = connect_zk(zk_hosts, timeout=20)
    try:
        md = MetadataStore(zk, cluster)
        deadline = time.monotonic() + timeout
        while True:
            now = set(md.live_nodes())
            off = sorted(set(hosts) - now) if live else sorted(set(hosts) & now)
            if not off:
                return
            if time.monotonic() > deadline:
                state = "did not register" if live else "are still live"
                raise RuntimeError(f"storage nodes {off} {state} after {timeout:.0f}s")
            time.sleep(0.2)
    finally:
        zk.stop()
        zk.close()
