"""The ecmem wire format, sans-IO: bytes in, messages out, and back.

A frame is a fixed header, a msgpack-encoded metadata block, a raw payload
(fragment bytes, never copied into the metadata) and an authentication tag
slot that stays empty until authentication lands:

    magic "EM" | version u8 | kind u8 | request id u32 |
    meta length u32 | payload length u32 | tag length u16
    meta | payload | tag

Nothing here touches a socket. Every malformed input raises ProtocolError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack

from .errors import ProtocolError
from .wirebase import (
    ALL_INDEXES,
    DEFAULT_MAX_PAYLOAD,
    E_BAD_REQUEST,
    E_CORRUPT,
    E_DENIED,
    E_FENCED,
    E_INTERNAL,
    E_NO_SPACE,
    E_NOT_FOUND,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_INDEX,
    MAX_META,
    MAX_PATCH,
    MAX_TAG,
    SEQ_BITS,
    VERSION,
    FrameHeader,
    Message,
    epoch_of,
)
from .wirebase import check_ints as _check_ints
from .wirebase import check_key as _check_key
from .wirebase import check_region as _check_region
from .wirebase import register as _register
from .wirereplies import Data, Error, Listing, Ok, PatchList

# Re-exported: the frame's ground floor is wirebase.py; everyone imports it from here.
__all__ = [
    "ALL_INDEXES",
    "Data",
    "Error",
    "Listing",
    "Ok",
    "PatchList",
    "DEFAULT_MAX_PAYLOAD",
    "E_BAD_REQUEST",
    "E_CORRUPT",
    "E_DENIED",
    "E_FENCED",
    "E_INTERNAL",
    "E_NO_SPACE",
    "E_NOT_FOUND",
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_INDEX",
    "MAX_META",
    "MAX_PATCH",
    "MAX_TAG",
    "SEQ_BITS",
    "epoch_of",
    "VERSION",
    "FrameHeader",
    "Message",
]


def parse_header(data: bytes | bytearray | memoryview, max_payload: int) -> FrameHeader:
    """Validate and parse a frame header of exactly HEADER_SIZE bytes."""
    if len(data) != HEADER_SIZE:
        raise ProtocolError(f"frame header is {len(data)} bytes, expected {HEADER_SIZE}")
    magic, version, kind, req_id, meta_len, payload_len, tag_len = HEADER.unpack(data)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {bytes(magic)!r}: the peer does not speak ecmem")
    if version != VERSION:
        raise ProtocolError(f"wire version {version} not supported (this side speaks {VERSION})")
    if kind not in MESSAGES:
        raise ProtocolError(f"unknown message kind {kind}")
    if meta_len > MAX_META:
        raise ProtocolError(f"metadata of {meta_len} bytes exceeds the {MAX_META}-byte limit")
    if payload_len > max_payload:
        raise ProtocolError(f"payload of {payload_len} bytes exceeds the {max_payload}-byte limit")
    if tag_len > MAX_TAG:
        raise ProtocolError(f"authentication tag of {tag_len} bytes exceeds {MAX_TAG}")
    return FrameHeader(kind, req_id, meta_len, payload_len, tag_len)


# ---- requests -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Put(Message):
    """Stage one fragment of a stripe (see storage_node.store for staged and committed).

    The fragment is ``length`` bytes long; the payload may be shorter, the rest
    being zeros (the tail of a region's last stripe). ``crc`` is the crc32c of the
    payload; the node checks it and keeps per-page sums of its own, which every
    read returns for the client to check.
    """

    KIND: ClassVar[int] = 1
    HAS_PAYLOAD: ClassVar[bool] = True
    region: str
    stripe: int
    index: int
    version: int
    length: int
    crc: int
    first: int  # the write this fragment belongs to: its first and last stripe,
    last: int
    end: int  # and the region byte it ends at
    lac: int  # the writer's commit point: every version up to it is committed
    base: int  # what the writer's recovery kept of older epochs' writes
    payload: bytes | bytearray | memoryview = b""

    def validate(self) -> None:
        _check_key(self.region, self.index, self.length)
        if len(self.payload) > self.length:
            raise ProtocolError(
                f"Put payload of {len(self.payload)} bytes is longer than the fragment "
                f"({self.length} bytes)"
            )


@dataclass(frozen=True, slots=True)
class PutSlice(Message):
    """Stage a fragment as version ``source`` of it with the payload in place at byte
    ``at`` (the column a small write changes); ``crc`` is the payload's crc32c. A node
    without version ``source`` answers NOT_FOUND, and the writer sends the whole
    fragment instead."""

    KIND: ClassVar[int] = 12
    HAS_PAYLOAD: ClassVar[bool] = True
    region: str
    stripe: int
    index: int
    version: int
    length: int
    source: int
    at: int
    crc: int
    first: int
    last: int
    end: int
    lac: int
    base: int
    payload: bytes | bytearray | memoryview = b""

    def validate(self) -> None:
        _check_key(self.region, self.index, self.length)
        if self.at + len(self.payload) > self.length:
            raise ProtocolError("PutSlice: the slice ends past the fragment's end")


@dataclass(frozen=True, slots=True)
class Patch(Message):
    """Stage a page patch: ``payload`` replaces the bytes at ``at`` of data fragment
    ``index`` of a stripe, as write ``version``; sent to that fragment's node and to the
    stripe's parity nodes (docs/protocol.md, "The page log")."""

    KIND: ClassVar[int] = 13
    HAS_PAYLOAD: ClassVar[bool] = True
    region: str
    stripe: int
    index: int
    holder: int  # the fragment of the stripe the receiving node holds
    version: int
    at: int
    crc: int
    first: int
    last: int
    end: int
    lac: int
    base: int
    payload: bytes | bytearray | memoryview = b""

    def validate(self) -> None:
        _check_key(self.region, max(self.index, self.holder))
        if not self.payload or len(self.payload) > MAX_PATCH:
            raise ProtocolError(f"Patch payload must be 1 to {MAX_PATCH} bytes")


@dataclass(frozen=True, slots=True)
class Patches(Message):
    """Several page patches for one node in one frame, each taken as its own Patch
    would be, in order: ``entries`` [stripe, index, holder, version, at, crc, first,
    last, end, length], their bytes one after another in the payload. The reply is Ok
    with ``failed``: [entry number, error code, message] of each one refused."""

    KIND: ClassVar[int] = 16
    HAS_PAYLOAD: ClassVar[bool] = True
    region: str
    lac: int
    base: int
    entries: list[Any]
    # Sent as the tuple of each patch's bytes (scattered, never joined); arrives joined.
    payload: bytes | bytearray | memoryview | tuple[memoryview, ...] = b""

    def items(self) -> list[tuple[list[int], memoryview]]:
        """Each entry with its bytes."""
        joined = b"".join(self.payload) if isinstance(self.payload, tuple) else self.payload
        out, pos, raw = [], 0, memoryview(joined)
        for e in self.entries:
            out.append((e, raw[pos : pos + e[9]]))
            pos += e[9]
        return out

    def validate(self) -> None:
        _check_key(self.region, 0)
        for e in self.entries:
            _check_ints(e, 10, "Patches entries")
            _check_key(self.region, max(e[1], e[2]))
            if not 0 < e[9] <= MAX_PATCH:
                raise ProtocolError(f"Patches: each patch must be 1 to {MAX_PATCH} bytes")
        pieces = self.payload if isinstance(self.payload, tuple) else (self.payload,)
        if sum(e[9] for e in self.entries) != sum(memoryview(p).nbytes for p in pieces):
            raise ProtocolError("Patches payload does not match its entries' lengths")


@dataclass(frozen=True, slots=True)
class Get(Message):
    """Read up to ``length`` bytes of a fragment from ``offset``: of its committed version,
    or with ``version`` of exactly that version, staged or committed; with its
    committed patches laid over it. ``asof``: the writer's own view up to that version,
    staged or not. ``raw``: without patches (bytes to decode from)."""

    KIND: ClassVar[int] = 2
    region: str
    stripe: int
    index: int
    offset: int
    length: int
    version: int = 0
    asof: int = 0
    raw: int = 0

    def validate(self) -> None:
        _check_key(self.region, self.index)


@dataclass(frozen=True, slots=True)
class GetPatches(Message):
    """The patches of a stripe's fragment ``index`` (ALL_INDEXES: of every one) newer
    than version ``after``: committed ones, or with ``asof`` the writer's up to it."""

    KIND: ClassVar[int] = 14
    region: str
    stripe: int
    index: int
    after: int
    asof: int = 0

    def validate(self) -> None:
        _check_key(self.region, self.index)


@dataclass(frozen=True, slots=True)
class Delete(Message):
    """Drop a region's fragments of stripes ``from_stripe`` and later (before ``until``
    if it is not 0; of versions up to ``upto`` if it is not 0), on behalf of a writer
    of ``epoch`` (0: the region is being removed, or a slab moved off this node)."""

    KIND: ClassVar[int] = 3
    region: str
    from_stripe: int
    epoch: int
    until: int = 0
    upto: int = 0

    def validate(self) -> None:
        _check_key(self.region, 0)


@dataclass(frozen=True, slots=True)
class Repair(Message):
    """Store a rebuilt fragment of a committed write: kept committed at once, under
    its original ``version``, on behalf of a rebuilder holding the lease of ``epoch``
    (refused, like any write, once a newer writer fenced the node)."""

    KIND: ClassVar[int] = 11
    HAS_PAYLOAD: ClassVar[bool] = True
    region: str
    stripe: int
    index: int
    version: int
    length: int
    crc: int
    first: int
    last: int
    end: int
    epoch: int
    payload: bytes | bytearray | memoryview = b""

    def validate(self) -> None:
        _check_key(self.region, self.index)
        if self.length > DEFAULT_MAX_PAYLOAD or len(self.payload) > self.length:
            raise ProtocolError("Repair: payload longer than the fragment")


@dataclass(frozen=True, slots=True)
class RepairPatch(Message):
    """Keep a committed page patch beside a rebuilt fragment (``holder``) of a stripe,
    for a rebuilder holding the lease of ``epoch``: the new holder must keep what a
    placed node keeps (its own fragment's patches, or every one on a parity node).
    ``lac`` and ``base``: the region's commit point and recovered base, as in Commit."""

    KIND: ClassVar[int] = 15
    HAS_PAYLOAD: ClassVar[bool] = True
    region: str
    stripe: int
    index: int
    holder: int
    version: int
    at: int
    crc: int
    first: int
    last: int
    end: int
    epoch: int
    lac: int
    base: int
    payload: bytes | bytearray | memoryview = b""

    def validate(self) -> None:
        _check_key(self.region, max(self.index, self.holder))
        if not self.payload or len(self.payload) > MAX_PATCH:
            raise ProtocolError(f"RepairPatch payload must be 1 to {MAX_PATCH} bytes")
        if self.version > self.lac:
            raise ProtocolError("RepairPatch: only a committed patch (at or below lac) is kept")


@dataclass(frozen=True, slots=True)
class List(Message):
    """List fragments held, of one region or (empty string) of all; committed ones, or
    with ``staged`` 1 the staged ones; with 2 the region's page patches."""

    KIND: ClassVar[int] = 4
    region: str
    staged: int = 0

    def validate(self) -> None:
        if self.region:
            _check_region(self.region)


@dataclass(frozen=True, slots=True)
class Stat(Message):
    KIND: ClassVar[int] = 5


@dataclass(frozen=True, slots=True)
class Corrupt(Message):
    """Debug only: damage a stored fragment (mode ``flip`` or ``truncate``)."""

    KIND: ClassVar[int] = 6
    region: str
    stripe: int
    index: int
    mode: str
    offset: int

    def validate(self) -> None:
        _check_key(self.region, self.index)
        if self.mode not in ("flip", "truncate"):
            raise ProtocolError(f"Corrupt.mode must be flip or truncate, not {self.mode!r}")


@dataclass(frozen=True, slots=True)
class Ping(Message):
    KIND: ClassVar[int] = 7


@dataclass(frozen=True, slots=True)
class Commit(Message):
    """Every write of ``region`` up to version ``upto`` is committed; of the writes of
    epochs older than ``upto``'s, those up to ``base`` are, and the rest never will be."""

    KIND: ClassVar[int] = 9
    region: str
    upto: int
    base: int

    def validate(self) -> None:
        _check_key(self.region, 0)


@dataclass(frozen=True, slots=True)
class Discard(Message):
    """Drop the staged fragments of ``region`` newer than version ``above``."""

    KIND: ClassVar[int] = 10
    region: str
    above: int
    epoch: int

    def validate(self) -> None:
        _check_key(self.region, 0)


@dataclass(frozen=True, slots=True)
class Fence(Message):
    """From now on refuse writes to ``region`` by writers older than ``epoch``."""

    KIND: ClassVar[int] = 8
    region: str
    epoch: int

    def validate(self) -> None:
        _check_key(self.region, 0)


# ---- replies ------------------------------------------------------------------


MESSAGES: dict[int, type[Message]] = {
    cls.KIND: _register(cls)
    for cls in (
        Put,
        PutSlice,
        Patch,
        Patches,
        Get,
        GetPatches,
        Delete,
        Repair,
        RepairPatch,
        List,
        Stat,
        Corrupt,
        Ping,
        Fence,
        Commit,
        Discard,
        Ok,
        Data,
        Error,
        Listing,
        PatchList,
    )
}


def encode(msg: Message, req_id: int) -> list[bytes | bytearray | memoryview]:
    """Frame a message; returns buffers to write in order (payload never copied)."""
    meta = msgpack.packb(msg.meta(), use_bin_type=True)
    payload: Any = getattr(msg, "payload", b"") if msg.HAS_PAYLOAD else b""
    if isinstance(payload, tuple):  # scattered: several buffers, sent back to back
        plen = sum(memoryview(p).nbytes for p in payload)
        head = HEADER.pack(MAGIC, VERSION, msg.KIND, req_id & 0xFFFFFFFF, len(meta), plen, 0)
        return [head + meta, *payload]
    plen = memoryview(payload).nbytes
    head = HEADER.pack(MAGIC, VERSION, msg.KIND, req_id & 0xFFFFFFFF, len(meta), plen, 0)
    if plen:
        return [head + meta, payload]
    return [head + meta]


def encode_bytes(msg: Message, req_id: int) -> bytes:
    return b"".join(bytes(b) for b in encode(msg, req_id))


def decode_meta(meta: bytes | bytearray | memoryview) -> Any:
    try:
        return msgpack.unpackb(meta, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types for bad input
        raise ProtocolError(f"metadata is not valid msgpack: {exc}") from exc


def build(header: FrameHeader, meta: Any, payload: Any) -> Message:
    """The message of a frame from its decoded metadata and its payload."""
    cls = MESSAGES[header.kind]
    try:
        return cls.from_parts(meta, payload)
    except ProtocolError:
        raise
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{cls.__name__}: {exc}") from exc


def decode_body(
    header: FrameHeader, meta: bytes | bytearray | memoryview, payload: bytes | bytearray
) -> Message:
    """Build the message of a frame whose header was already parsed."""
    return build(header, decode_meta(meta), payload)
