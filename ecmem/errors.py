"""The ecmem error hierarchy.

Every error the project raises derives from :class:`EcmemError`. ``retriable``
tells a caller whether the same call may succeed later without any change on
its side (a node coming back, a lease expiring); messages say what to do next.
"""

from __future__ import annotations


class EcmemError(Exception):
    """Root of every ecmem error."""

    retriable: bool = False
    code: str = "ECMEM_ERROR"


class ConfigError(EcmemError, ValueError):
    """A bad argument or setting: fix the input and call again."""

    code = "BAD_CONFIG"


class PolicyError(ConfigError):
    """A redundancy policy that cannot be used."""

    code = "BAD_POLICY"


class InvalidNameError(ConfigError):
    """A region name that breaks the naming rules."""

    code = "BAD_NAME"


class ProtocolError(EcmemError):
    """A frame or message that does not follow the wire format."""

    code = "PROTOCOL"


class RemoteError(EcmemError):
    """A storage node answered a request with an error."""

    code = "REMOTE"

    def __init__(self, message: str, *, node: str = "", remote_code: str = "") -> None:
        super().__init__(message)
        self.node = node
        self.remote_code = remote_code


class NodeUnavailable(EcmemError):
    """A storage node could not be reached or did not answer in time."""

    code = "NODE_UNAVAILABLE"
    retriable = True

    def __init__(self, message: str, *, node: str = "") -> None:
        super().__init__(message)
        self.node = node


class NodeTimeout(NodeUnavailable):
    """A storage node accepted a request but did not answer in time (slow or paused)."""

    code = "NODE_TIMEOUT"


class NoSpaceError(EcmemError):
    """A node or the cluster has no room for the data."""

    code = "NO_SPACE"


class ClusterError(EcmemError):
    """The cluster cannot do what was asked in its present state."""

    code = "CLUSTER"


class NotEnoughNodesError(ClusterError):
    """Fewer usable storage nodes than a policy needs."""

    code = "NOT_ENOUGH_NODES"
    retriable = True


class ClusterFullError(NotEnoughNodesError, NoSpaceError):
    """Enough nodes are up, but too few have room for the data."""

    code = "NO_SPACE"
    retriable = False


class CoordinationError(ClusterError):
    """ZooKeeper could not be reached or gave up the session."""

    code = "ZOOKEEPER"
    retriable = True


class ConcurrentUpdateError(ClusterError):
    """Region metadata changed under us too many times in a row."""

    code = "CONCURRENT_UPDATE"
    retriable = True


class RegionNotFound(EcmemError, LookupError):
    """No region of that name."""

    code = "NOT_FOUND"


class RegionExists(EcmemError):
    """A region of that name exists already."""

    code = "EXISTS"


class RegionBusy(EcmemError):
    """Another client holds the region's write lease."""

    code = "BUSY"
    retriable = True

    def __init__(self, message: str, *, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


class Fenced(EcmemError):
    """A newer writer took the region over; this writer's writes are refused."""

    code = "FENCED"


class WriterStopped(Fenced):
    """This client's writer stopped because one of its own writes failed (not because
    another writer took over): later writes must not be committed past the hole. The
    next writer, this client's on its next write, keeps every acknowledged write."""

    code = "WRITER_STOPPED"


class WriteInDoubt(EcmemError):
    """A write failed after parts of it reached nodes: the region's next writer keeps it
    if enough of it is there, or drops it. Read its bytes back to know; the next write
    reopens the region."""

    code = "IN_DOUBT"
    retriable = True


class DataUnavailableError(EcmemError):
    """Too many fragments of a stripe are lost or damaged to rebuild it.

    Raised instead of ever returning wrong bytes; names the region, slab,
    stripe and the fragments that could not be read, and why.
    """

    code = "DATA_UNAVAILABLE"
    retriable = True

    def __init__(
        self,
        region: str,
        slab: int,
        stripe: int,
        missing: dict[int, str],
        needed: int,
    ) -> None:
        self.region = region
        self.slab = slab
        self.stripe = stripe
        self.missing = dict(missing)
        self.needed = needed
        detail = ", ".join(f"fragment {i}: {why}" for i, why in sorted(missing.items()))
        super().__init__(self.describe(detail))

    def describe(self, detail: str) -> str:
        return (
            f"region {self.region!r} slab {self.slab} stripe {self.stripe}: data unavailable, "
            f"{self.needed} fragments needed but {len(self.missing)} are lost ({detail}); "
            "bring the lost storage nodes back (ecmem nodes, ecmem status) and retry"
        )


class DataLostError(DataUnavailableError):
    """A stripe that was written has fewer fragments left anywhere than it needs.

    Unlike DataUnavailableError no node that may still hold it is down: waiting will
    not bring it back. Never read as zeros; names the region, slab and stripe.
    """

    code = "DATA_LOST"
    retriable = False

    def describe(self, detail: str) -> str:
        return (
            f"region {self.region!r} slab {self.slab} stripe {self.stripe}: data lost: it was "
            f"written, but fewer than the {self.needed} fragments needed remain on any node "
            f"({detail}); restore the region from a copy, or accept the loss with "
            f"'ecmem region mark-lost-ok {self.region}' (its lost stripes then read as zeros)"
        )


class ChecksumError(EcmemError):
    """Bytes that do not match their checksum."""

    code = "CHECKSUM"


class ClosedError(EcmemError, ValueError):
    """Use of a closed client or region file."""

    code = "CLOSED"
