"""An incremental frame decoder over ``wire``: bytes in, whole messages out (the
chaos suite's raw client and the wire tests use it)."""

from __future__ import annotations

from .wire import (
    DEFAULT_MAX_PAYLOAD,
    HEADER_SIZE,
    FrameHeader,
    Message,
    decode_body,
    parse_header,
)


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
