"""Which cluster to talk to: an explicit --zk, else ECMEM_ZK, else the local one."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

DEFAULT_STATE_DIR = ".ecmem"
DEFAULT_CLUSTER = "default"


@dataclass(frozen=True)
class Target:
    zk: str
    cluster: str


def state_dir_default() -> Path:
    return Path(os.environ.get("ECMEM_STATE_DIR", DEFAULT_STATE_DIR))


def resolve(
    zk: str | None = None,
    cluster: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
) -> Target:
    cluster = cluster or os.environ.get("ECMEM_CLUSTER") or None
    hosts = zk or os.environ.get("ECMEM_ZK") or None
    if hosts:
        return Target(hosts, cluster or DEFAULT_CLUSTER)
    sd = Path(state_dir) if state_dir is not None else state_dir_default()
    info = sd / "cluster.json"
    try:
        data = json.loads(info.read_text())
        return Target(str(data["zk"]), cluster or str(data.get("cluster", DEFAULT_CLUSTER)))
    except FileNotFoundError:
        raise ConfigError(
            f"no cluster given and no local cluster in {sd.resolve()}: start one with "
            "'ecmem up', or pass --zk HOSTS (or set ECMEM_ZK)"
        ) from None
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{info} is damaged ({exc}): run 'ecmem up' again to rewrite it") from exc
