"""ecmem: fault-tolerant remote memory.

import ecmem
cl = ecmem.connect()                       # ECMEM_ZK, or the local cluster in ./.ecmem
cl.create_region("ckpt/job42/rank0", "1GiB", policy="ec:4+2")
with cl.open("ckpt/job42/rank0", "r+b") as f:
    f.write(b"state")
"""

from .client import Client, connect
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
    WriteInDoubt,
    WriterStopped,
)
from .policy import ECPolicy, ReplicationPolicy, parse_policy
from .regionfile import RegionFile
from .stat import RegionStat

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
    "WriteInDoubt",
    "WriterStopped",
    "ReplicationPolicy",
    "connect",
    "parse_policy",
]
