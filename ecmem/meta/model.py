"""Typed records kept in ZooKeeper, with their JSON forms."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ecmem import extents
from ecmem.errors import EcmemError, ProtocolError
from ecmem.policy import parse_policy
from ecmem.wirebase import REGION_ID

Placement = list[tuple[str, str]]  # per fragment index: (node id, node incarnation)


# The JSON types a field of each annotated type may hold.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict, list),  # placements by slab: a list in older records
}


def _from_dict(cls: Any, raw: bytes, what: str) -> Any:
    """A record from its JSON, every known field of its declared JSON type (a record
    anyone could have written must fail here, not deep in a daemon)."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise TypeError(f"a JSON object was expected, not {type(data).__name__}")
        types = {f.name: str(f.type).split("[")[0] for f in fields(cls)}
        for k, v in data.items():
            if k not in types:
                continue  # not a field ("holders" is read on its own)
            want = _JSON_TYPES.get(types[k], (object,))
            if not isinstance(v, want) or (isinstance(v, bool) and bool not in want):
                raise TypeError(f"{k} holds {type(v).__name__}, not {types[k]}")
        return cls(**{k: v for k, v in data.items() if k in types})
    except (ValueError, TypeError, RecursionError) as exc:
        raise ProtocolError(f"damaged {what} record in ZooKeeper: {exc}") from exc


def _bounded(what: str, value: int, low: int, high: int = 1 << 63) -> None:
    if not low <= value < high:
        raise ValueError(f"{what} {value} is out of range")


@dataclass
class NodeInfo:
    id: str
    address: str
    capacity: int
    used: int = 0
    failure_domain: str = ""
    incarnation: str = ""
    hostname: str = ""
    pid: int = 0
    started: float = 0.0
    state: str = "up"
    metrics: str = ""  # host:port of its Prometheus endpoint, if it serves one
    session_timeout: float = 0.0  # its ZooKeeper session's, s (0: not said)

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.used)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> NodeInfo:
        info: NodeInfo = _from_dict(cls, raw, "node")
        host, _, port = info.address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ProtocolError(f"damaged node record {info.id!r}: address {info.address!r}")
        if info.capacity < 0 or info.used < 0:
            raise ProtocolError(f"damaged node record {info.id!r}: negative capacity or use")
        return info


@dataclass
class RegionMeta:
    name: str
    id: str
    policy: str
    size: int
    chunk: int  # fragment payload bytes per stripe
    slab_stripes: int  # stripes per slab
    owner: str = ""
    mode: int = 0o644
    ctime: float = 0.0
    mtime: float = 0.0
    uid: int = -1  # numeric owner as a mount shows it (-1: the mounting user)
    gid: int = -1
    epoch: int = 0
    # Placements of the slabs placed so far, by slab number. A slab is placed when it
    # is first written (a small region's at creation): an unplaced slab was never
    # written, so a region's record grows with the slabs written, not its size.
    slabs: dict[int, Placement] = field(default_factory=dict)
    # (first stripe, lowest valid version): fragments of those stripes written
    # before a truncation are stale and read as never written.
    floors: list[tuple[int, int]] = field(default_factory=list)
    # (slab, fragment index) whose holder joined after the slab had data (a handoff):
    # it lacks older stripes, so its "no such fragment" does not mean "never written".
    # A vacant holder ("", "") is a fragment no node holds until it is rebuilt.
    partial: list[tuple[int, int]] = field(default_factory=list)
    # (slab, fragment index, version) of partial slots: the holder's copies of older
    # versions are left from an earlier stay at that index, when it missed writes that
    # came after, so they are never read; what the handoff stores on it is newer.
    partial_since: list[tuple[int, int, int]] = field(default_factory=list)
    min_durable: int = 0  # fragments a write needs when nodes are down (0: k+1)
    # Stripes that hold written data, as merged (first, end) ranges: a stripe outside is a
    # hole and reads as zeros; one inside that no node holds is lost, never zeros. The
    # writer records a write's stripes before its commit point can pass it.
    written: list[tuple[int, int]] = field(default_factory=list)
    # Written stripes found with too few fragments to read or rebuild (REGION_DATA_LOST).
    lost: list[tuple[int, int]] = field(default_factory=list)
    # (first, end, version): stripes first recorded by a write that may not be committed
    # yet; a recovery that drops that write takes them out of ``written`` again.
    pending: list[tuple[int, int, int]] = field(default_factory=list)
    # A page patch may have been written: set by the writer before it stages its first
    # one (a record from before the flag says so too), so a record read afresh that
    # says otherwise proves the stripes hold no patches to look for.
    paged: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.slabs, list):  # every slab from 0 placed, as a list
            self.slabs = dict(enumerate(self.slabs))

    def hand_off(self, slab: int, index: int, holder: tuple[str, str], since: int) -> None:
        """Give a slot to a new holder that lacks the slab's older stripes; its copies
        of versions below ``since`` are stale. An empty holder leaves the slot vacant."""
        self.slabs[slab][index] = holder
        self.settle_slots([(slab, index)])
        if holder[0]:
            self.partial.append((slab, index))
            self.partial_since.append((slab, index, since))

    def settle_slots(self, slots: list[tuple[int, int]]) -> None:
        """These slots are no longer partial (rebuilt whole, or vacant)."""
        gone = set(slots)
        self.partial = [p for p in self.partial if p not in gone]
        self.partial_since = [p for p in self.partial_since if (p[0], p[1]) not in gone]

    def partial_slots(self) -> dict[tuple[int, int], int]:
        """Each partial slot, with the lowest version its holder's copies count from."""
        since = {(s, i): v for s, i, v in self.partial_since}
        return {p: since.get(p, 0) for p in self.partial}

    def check(self) -> None:
        """ValueError unless every number is in range and every placement fits the
        policy (a record anyone could have written is checked before it is used)."""
        if not REGION_ID.fullmatch(self.id):
            raise ValueError(f"region id {self.id[:40]!r} is not 16 hex digits")
        width = parse_policy(self.policy).width
        _bounded("size", self.size, 0)
        _bounded("chunk", self.chunk, 1, 1 << 31)
        _bounded("stripes per slab", self.slab_stripes, 1, 1 << 40)
        _bounded("epoch", self.epoch, 0, 1 << 31)
        _bounded("mode", self.mode, 0, 0o10000)
        _bounded("uid", self.uid, -1, 1 << 32)
        _bounded("gid", self.gid, -1, 1 << 32)
        _bounded("min_durable", self.min_durable, 0, width + 1)
        for t in (self.ctime, self.mtime):
            if not 0 <= t < 1e11:  # NaN too
                raise ValueError(f"time {t} is out of range")
        for slab, placement in self.slabs.items():
            _bounded("slab", slab, 0)
            if len(placement) != width:
                raise ValueError(f"slab {slab} has {len(placement)} slots, not {width}")
        ss = self.slab_stripes
        for first, end in self.lost:  # lost stripes were written: their slabs are placed
            if first // ss not in self.slabs or (end - 1) // ss - first // ss >= len(self.slabs):
                raise ValueError(f"lost stripes {first}-{end} lie outside the placed slabs")

    def to_json(self) -> bytes:
        # Placements refer to a table of (node, incarnation) pairs: a slab costs a few
        # small integers, so a region of thousands of slabs fits ZooKeeper's 1 MB limit.
        data = asdict(self)
        table: dict[tuple[str, str], int] = {}
        data["slabs"] = {
            str(s): [table.setdefault((n, i), len(table)) for n, i in self.slabs[s]]
            for s in sorted(self.slabs)
        }
        data["holders"] = [list(k) for k in table]
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> RegionMeta:
        meta: RegionMeta = _from_dict(cls, raw, "region")
        try:
            holders = [(str(n), str(i)) for n, i in json.loads(raw).get("holders", [])]
            # Indexes into holders, by slab (a list, every slab from 0, in older records).
            stored: Any = meta.slabs
            pairs = stored.items() if isinstance(stored, dict) else enumerate(stored)
            meta.slabs = {int(s): [holders[int(j)] for j in slab] for s, slab in pairs}
            meta.floors = [(int(s), int(v)) for s, v in meta.floors]
            meta.partial = [(int(s), int(i)) for s, i in meta.partial]
            meta.partial_since = [(int(s), int(i), int(v)) for s, i, v in meta.partial_since]
            if "written" not in json.loads(raw):
                # A record from before written stripes were kept: take every stripe below
                # the size as written, so that nothing lost can ever read as zeros.
                meta.written = [
                    (0, -(-meta.size // parse_policy(meta.policy).stripe_data(meta.chunk)))
                ]
            meta.written = extents.normal(meta.written)
            meta.lost = extents.normal(meta.lost)
            meta.pending = [(int(f), int(e), int(v)) for f, e, v in meta.pending]
            meta.check()
        except (ValueError, TypeError, IndexError, EcmemError) as exc:
            raise ProtocolError(f"damaged placement in region record {meta.name!r}: {exc}") from exc
        return meta


@dataclass
class DirMeta:
    """A directory made on a mount: its attributes (regions' names make the rest)."""

    name: str
    mode: int = 0o755
    uid: int = -1
    gid: int = -1
    ctime: float = 0.0
    mtime: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> DirMeta:
        meta: DirMeta = _from_dict(cls, raw, "directory")
        return meta
