"""The wire format's ground floor: frame constants and header, the message base
class, error codes and versions; the messages themselves are in ``wire``."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .errors import ProtocolError

MAGIC = b"EM"
VERSION = 1
HEADER = struct.Struct("!2sBBIIIH")
HEADER_SIZE = HEADER.size
MAX_META = 64 * 1024
MAX_TAG = 64
DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
MAX_PATCH = 64 * 1024  # bytes one page patch may replace
ALL_INDEXES = 255  # GetPatches: of every fragment of the stripe


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
            if want is int and not 0 <= value < MAX_INT:
                raise ProtocolError(f"{cls.__name__}.{name} is out of range (0 to 2**63-1)")
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


def register(cls: type[Message]) -> type[Message]:
    names = [f.name for f in fields(cls) if f.name != "payload"]  # type: ignore[arg-type]
    types = {f.name: f.type for f in fields(cls)}  # type: ignore[arg-type]
    cls.NAMES = tuple(names)
    cls.TYPES = tuple(_TYPES[str(types[n])] for n in names)
    return cls


MAX_INDEX = 255  # fragment indexes of a stripe: 0 to this


MAX_INT = 1 << 63  # every integer field is below it
# A region's id as its record names it (16 hex digits): nodes make file names of it,
# so nothing else may pass.
REGION_ID = re.compile(r"[0-9a-f]{16}")


def check_ints(values: Any, count: int, what: str) -> None:
    if not (isinstance(values, list) and len(values) == count):
        raise ProtocolError(f"{what} must be lists of {count} integers")
    if not all(type(x) is int and 0 <= x < MAX_INT for x in values):
        raise ProtocolError(f"{what} must hold integers from 0 to 2**63-1")


def check_region(region: str) -> None:
    if not REGION_ID.fullmatch(region):
        raise ProtocolError(f"region id {region[:40]!r} is not 16 lowercase hex digits")


def check_key(region: str, index: int, length: int = 0) -> None:
    check_region(region)
    if length > DEFAULT_MAX_PAYLOAD:
        raise ProtocolError(f"a fragment of {length} bytes exceeds the limit")
    if index > MAX_INDEX:
        raise ProtocolError(f"fragment index {index} out of range")


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
