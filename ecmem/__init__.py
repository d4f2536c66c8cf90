"""ecmem: fault-tolerant remote memory.

import ecmem
cl = ecmem.connect()                       # ECMEM_ZK, or the local cluster in ./.ecmem
cl.create_region("ckpt/job42/rank0", "1GiB", policy="ec:4+2")
with cl.open("ckpt/job42/rank0", "r+b") as f:
    f.write(b"state")
"""

from typing import TYPE_CHECKING, Any

from .errors import (
    ChecksumError,
    ClosedError,
    ClusterError,
    ClusterFullError,
    ConcurrentUpdateError,
    ConfigError,
    CoordinationError,
    DataLostError,
    DataUnavailableError,
    EcmemError,
    Fenced,
    InvalidNameError,
    NodeTimeout,
    NodeUnavailable,
    NoSpaceError,
    NotEnoughNodesError,
    PolicyError,
    ProtocolError,
    RegionBusy,
    RegionExists,
    RegionNotFound,
    RemoteError,
)
from .policy import ECPolicy, ReplicationPolicy, parse_policy

if TYPE_CHECKING:
    from .client import Client, connect
    from .regionfile import RegionFile
    from .stat import RegionStat

# The client pulls in the coordinator package, which itself uses ecmem's core
# modules; importing it lazily keeps that from being a cycle.
_LAZY = {
    "Client": "client",
    "connect": "client",
    "RegionFile": "regionfile",
    "RegionStat": "stat",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ecmem' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)


__version__ = "0.1.0"

__all__ = [
    "ChecksumError",
    "Client",
    "ClosedError",
    "ClusterError",
    "ConcurrentUpdateError",
    "ConfigError",
    "CoordinationError",
    "DataLostError",
    "DataUnavailableError",
    "ECPolicy",
    "EcmemError",
    "Fenced",
    "InvalidNameError",
    "ClusterFullError",
    "NoSpaceError",
    "NodeTimeout",
    "NodeUnavailable",
    "NotEnoughNodesError",
    "PolicyError",
    "ProtocolError",
    "RegionBusy",
    "RegionExists",
    "RegionFile",
    "RegionNotFound",
    "RegionStat",
    "RemoteError",
    "ReplicationPolicy",
    "connect",
    "parse_policy",
]
