"""The ecmem wire format's replies (sans-IO, like wire.py, which registers them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import ProtocolError
from .wirebase import Message


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
    pending: int  # patches of the stripe newer than ``version`` this node did not lay over
    patched: int  # the newest patch it laid over (0: none); wfirst, wcount are then its write's
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


@dataclass(frozen=True, slots=True)
class PatchList(Message):
    """Patches, oldest first: [version, index, at, length, first, last, end] each (the
    last three: their write's first and last stripe and end byte), their bytes one
    after another in the payload. ``base``: the newest version of the stripe committed
    on the node; patches up to it were dropped there (folded), so a reader that decoded
    an older version must read again."""

    KIND: ClassVar[int] = 68
    HAS_PAYLOAD: ClassVar[bool] = True
    entries: list[Any]
    base: int = 0
    payload: bytes | bytearray | memoryview = b""

    def patches(self) -> list[tuple[int, int, int, bytes]]:
        out, pos, raw = [], 0, bytes(self.payload)
        for version, index, at, length, *_ in self.entries:
            out.append((version, index, at, raw[pos : pos + length]))
            pos += length
        return out

    def writes(self) -> list[tuple[int, int, int]]:
        """Each patch's write: (first stripe, last stripe, end byte), in order."""
        return [(first, last, end) for *_, first, last, end in self.entries]

    def validate(self) -> None:
        if not all(isinstance(e, list) and len(e) == 7 for e in self.entries):
            raise ProtocolError(
                "PatchList entries must be [version, index, at, length, first, last, end]"
            )
        if sum(e[3] for e in self.entries) != len(self.payload):
            raise ProtocolError("PatchList payload does not match its entries' lengths")
