"""Which cluster to talk to: an explicit --zk, else ECMEM_ZK, else the local one."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

DEFAULT_STATE_DIR = ".ecmem"
DEFAULT_CLUSTER = "default"


@dataclass(frozen=True)
class Target:
    zk: str
    cluster: str
    source: str = ""  # where zk came from, for messages: "--zk", "$ECMEM_ZK", a file


def state_dir_default() -> Path:
    return Path(os.environ.get("ECMEM_STATE_DIR", DEFAULT_STATE_DIR))


def resolve(
    zk: str | None = None,
    cluster: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
) -> Target:
    cluster = cluster or os.environ.get("ECMEM_CLUSTER") or None
    if zk:
        return Target(zk, cluster or DEFAULT_CLUSTER, "--zk")
    hosts = os.environ.get("ECMEM_ZK") or None
    if hosts:
        return Target(hosts, cluster or DEFAULT_CLUSTER, "$ECMEM_ZK")
    sd = Path(state_dir) if state_dir is not None else state_dir_default()
    info = sd / "cluster.json"
    try:
        data = json.loads(info.read_text())
        return Target(
            str(data["zk"]),
            cluster or str(data.get("cluster", DEFAULT_CLUSTER)),
            f"the local cluster in {sd.resolve()}",
        )
    except FileNotFoundError:
        raise ConfigError(
            f"no cluster given and no local cluster in {sd.resolve()}: start one with "
            "'ecmem up', or pass --zk HOSTS (or set ECMEM_ZK)"
        ) from None
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{info} is damaged ({exc}): run 'ecmem up' again to rewrite it") from exc


def _host_ports(hosts: str) -> list[tuple[str, int]]:
    out = []
    for part in hosts.split("/", 1)[0].split(","):
        host, _, port = part.strip().rpartition(":")
        if not host:
            host, port = port, "2181"
        try:
            out.append((host.strip("[]"), int(port)))
        except ValueError:
            continue
    return out


def refused(hosts: str, timeout: float = 1.0) -> bool:
    """True if every ZooKeeper server in ``hosts`` refuses a connection (nobody listens
    there), so waiting for one is pointless; False if any answers or it is unclear."""
    addrs = _host_ports(hosts)
    if not addrs:
        return False
    for addr in addrs:
        try:
            socket.create_connection(addr, timeout=timeout).close()
            return False
        except ConnectionRefusedError:
            continue
        except OSError:
            return False  # unreachable or slow: not known to be down
    return True


def local_cluster_note(state_dir: str | os.PathLike[str] | None, but_not: str) -> str:
    """A sentence naming the running local cluster in ``state_dir``, if there is one and
    its ZooKeeper is not ``but_not``; else ""."""
    sd = Path(state_dir) if state_dir is not None else state_dir_default()
    try:
        data = json.loads((sd / "cluster.json").read_text())
        zk = str(data["zk"])
    except (OSError, ValueError, KeyError):
        return ""
    if zk == but_not or not zk or refused(zk, 0.5):
        return ""
    return f"; a local cluster is running in {sd.resolve()} (ZooKeeper {zk})"


def unreachable(
    target: Target, state_dir: str | os.PathLike[str] | None, why: str, waited: float = 0.0
) -> str:
    """The message for a ZooKeeper that does not answer: where its address came from,
    what to do, and the local cluster that does answer if there is one."""
    within = f" within {waited:.0f}s" if waited else ""
    note = local_cluster_note(state_dir, target.zk)
    if target.source == "$ECMEM_ZK":
        fix = (
            "set ECMEM_ZK to a running cluster's ZooKeeper, or 'unset ECMEM_ZK' to use the "
            "local cluster"
            + (note + ": 'unset ECMEM_ZK' to use it" if note else " ('ecmem up' starts one)")
        )
        return f"could not reach ZooKeeper at {target.zk} (from $ECMEM_ZK){within} ({why}); {fix}"
    if target.source.startswith("the local cluster"):
        return (
            f"could not reach ZooKeeper at {target.zk} (from {target.source}){within} ({why}); "
            "is that cluster stopped? start it with 'ecmem up'"
        )
    return (
        f"could not reach ZooKeeper at {target.zk} (from --zk){within} ({why}); check the "
        "address, or leave out --zk to use the local cluster"
        + (note + ": leave out --zk to use it" if note else " ('ecmem up' starts one)")
    )
