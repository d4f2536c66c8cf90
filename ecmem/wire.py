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

import struct
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import msgpack

from .errors import ProtocolError

MAGIC = b"EM"
VERSION = 1
HEADER = struct.Struct("!2sBBIIIH")
HEADER_SIZE = HEADER.size
MAX_META = 64 * 1024
MAX_TAG = 64
DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FrameHeader:
    kind: int
    req_id: int
    meta_len: int
    payload_len: int
    tag_len: int

    @property
    def body_len(self) -> int:
        return self.meta_len + self.payload_len + self.tag_len


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


class Message:
    """Base of every wire message; subclasses are frozen dataclasses."""

    KIND: ClassVar[int]
    HAS_PAYLOAD: ClassVar[bool] = False
    # Filled in once per class by _register: field names (payload excluded) and types.
    NAMES: ClassVar[tuple[str, ...]] = ()
    TYPES: ClassVar[tuple[Any, ...]] = ()

    def meta(self) -> list[Any]:
        return [getattr(self, name) for name in self.NAMES]

    @classmethod
    def from_parts(cls, meta: Any, payload: Any) -> Message:
        names = cls.NAMES
        if not isinstance(meta, list) or len(meta) != len(names):
            raise ProtocolError(f"{cls.__name__}: metadata must be a list of {len(names)} fields")
        for name, value, want in zip(names, meta, cls.TYPES, strict=True):
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise ProtocolError(
                    f"{cls.__name__}.{name} must be {want.__name__}, got {type(value).__name__}"
                )
            if want is int and value < 0:
                raise ProtocolError(f"{cls.__name__}.{name} is negative")
        if cls.HAS_PAYLOAD:
            msg = cls(*meta, payload)  # type: ignore[call-arg]
        elif payload:
            raise ProtocolError(f"{cls.__name__} carries no payload but {len(payload)} bytes came")
        else:
            msg = cls(*meta)
        msg.validate()
        return msg

    def validate(self) -> None:
        """Checks beyond field types; subclasses add theirs."""


_TYPES: dict[str, type] = {
    "int": int,
    "str": str,
    "bytes": bytes,
    "dict[str, Any]": dict,
    "list[Any]": list,
}


def _register(cls: type[Message]) -> type[Message]:
    names = [f.name for f in fields(cls) if f.name != "payload"]  # type: ignore[arg-type]
    types = {f.name: f.type for f in fields(cls)}  # type: ignore[arg-type]
    cls.NAMES = tuple(names)
    cls.TYPES = tuple(_TYPES[str(types[n])] for n in names)
    return cls


def _check_key(region: str, index: int) -> None:
    if not region or len(region) > 64:
        raise ProtocolError("region id must be 1 to 64 characters")
    if index > 255:
        raise ProtocolError(f"fragment index {index} out of range")


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
        _check_key(self.region, self.index)
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
        _check_key(self.region, self.index)
        if self.at + len(self.payload) > self.length:
            raise ProtocolError("PutSlice: the slice ends past the fragment's end")


@dataclass(frozen=True, slots=True)
class Get(Message):
    """Read up to ``length`` bytes of a fragment from ``offset``: of its committed version,
    or with ``version`` of exactly that version, staged or committed."""

    KIND: ClassVar[int] = 2
    region: str
    stripe: int
    index: int
    offset: int
    length: int
    version: int = 0

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
class List(Message):
    """List fragments held, of one region or (empty string) of all; committed ones, or
    with ``staged`` the staged ones."""

    KIND: ClassVar[int] = 4
    region: str
    staged: int = 0


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


@dataclass(frozen=True, slots=True)
class Ok(Message):
    KIND: ClassVar[int] = 64
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Data(Message):
    """Fragment bytes: whole pages from ``first_page``, with their checksums.

    A receiver may scatter the payload into several buffers as it arrives;
    ``payload`` is then the tuple of those buffers, in order.
    """

    KIND: ClassVar[int] = 65
    HAS_PAYLOAD: ClassVar[bool] = True
    version: int
    fragment_len: int
    first_page: int
    crcs: bytes
    wfirst: int  # the stripes its write covered: wcount from wfirst (0: not known)
    wcount: int
    payload: bytes | bytearray | memoryview | tuple[memoryview, ...] = b""


@dataclass(frozen=True, slots=True)
class Error(Message):
    KIND: ClassVar[int] = 66
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Listing(Message):
    KIND: ClassVar[int] = 67
    entries: list[Any]


MESSAGES: dict[int, type[Message]] = {
    cls.KIND: _register(cls)
    for cls in (
        Put,
        PutSlice,
        Get,
        Delete,
        Repair,
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
    )
}

# Error codes a node may answer with.
E_NOT_FOUND = "NOT_FOUND"
E_NO_SPACE = "NO_SPACE"
E_BAD_REQUEST = "BAD_REQUEST"
E_CORRUPT = "CORRUPT"
E_DENIED = "DENIED"
E_INTERNAL = "INTERNAL"
E_FENCED = "FENCED"

# A fragment version is the writer's epoch in the high bits and its sequence in the low.
SEQ_BITS = 32


def epoch_of(version: int) -> int:
    return version >> SEQ_BITS


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


class FrameDecoder:
    """Incremental decoder: feed bytes, take whole messages out.

    Keeps at most one partial frame buffered; a frame over the limits raises
    ProtocolError before its body is buffered.
    """

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._header: FrameHeader | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, Message]]:
        self._buf += data
        out: list[tuple[int, Message]] = []
        while True:
            if self._header is None:
                if len(self._buf) < HEADER_SIZE:
                    return out
                self._header = parse_header(bytes(self._buf[:HEADER_SIZE]), self.max_payload)
                del self._buf[:HEADER_SIZE]
            h = self._header
            if len(self._buf) < h.body_len:
                return out
            meta = bytes(self._buf[: h.meta_len])
            payload = bytes(self._buf[h.meta_len : h.meta_len + h.payload_len])
            del self._buf[: h.body_len]
            self._header = None
            out.append((h.req_id, decode_body(h, meta, payload)))

    @property
    def buffered(self) -> int:
        return len(self._buf)
