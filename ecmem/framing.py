"""asyncio framing for the wire format, shared by nodes and clients.

A BufferedProtocol: small frames are parsed out of one scratch buffer, and
the payload of a large frame is received straight into its own buffer, so
fragment bytes are copied once from the kernel and never again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from . import wire
from .errors import ProtocolError

log = logging.getLogger(__name__)

SCRATCH = 256 * 1024

FrameHandler = Callable[[int, wire.Message], None]


class FrameProtocol(asyncio.BufferedProtocol):
    """Turns a byte stream into (request id, message) calls of ``on_frame``."""

    def __init__(self, max_payload: int = wire.DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self.transport: asyncio.Transport | None = None
        self._scratch = bytearray(SCRATCH)
        self._start = 0
        self._end = 0
        self._header: wire.FrameHeader | None = None
        self._meta: bytes = b""
        self._direct: bytearray | None = None
        self._filled = 0
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.closed = False

    # -- hooks for subclasses ---------------------------------------------------

    def on_frame(self, req_id: int, msg: wire.Message) -> None:
        raise NotImplementedError

    def on_protocol_error(self, exc: ProtocolError) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        log.warning("closing connection from %s: %s", peer, exc)
        self.abort()

    # -- asyncio protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence the cast.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._direct = None
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_exception(ConnectionError("connection closed"))
        self._drain_waiters.clear()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self._drain_waiters.clear()

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionError("connection closed")
        if not self._paused:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(fut)
        await fut

    def send(self, msg: wire.Message, req_id: int) -> None:
        if self.transport is None or self.closed:
            raise ConnectionError("connection closed")
        self.transport.writelines(wire.encode(msg, req_id))

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._direct is not None:
            return memoryview(self._direct)[self._filled :]
        if self._start == self._end:
            self._start = self._end = 0
        elif len(self._scratch) - self._end < wire.MAX_META:
            pending = self._scratch[self._start : self._end]
            self._scratch[: len(pending)] = pending
            self._start, self._end = 0, len(pending)
        return memoryview(self._scratch)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self._direct is not None:
                self._filled += nbytes
                if self._filled == len(self._direct):
                    self._finish_direct()
                return
            self._end += nbytes
            self._parse_scratch()
        except ProtocolError as exc:
            self.on_protocol_error(exc)

    def eof_received(self) -> bool | None:
        return None

    # -- parsing ----------------------------------------------------------------

    def _parse_scratch(self) -> None:
        buf = self._scratch
        while not self.closed:
            avail = self._end - self._start
            if self._header is None:
                if avail < wire.HEADER_SIZE:
                    return
                hdr_end = self._start + wire.HEADER_SIZE
                self._header = wire.parse_header(buf[self._start : hdr_end], self.max_payload)
                self._start = hdr_end
                avail -= wire.HEADER_SIZE
            h = self._header
            if avail >= h.body_len:
                s = self._start
                meta = bytes(buf[s : s + h.meta_len])
                payload = bytes(buf[s + h.meta_len : s + h.meta_len + h.payload_len])
                self._start = s + h.body_len
                self._header = None
                self.on_frame(h.req_id, wire.decode_body(h, meta, payload))
                continue
            if avail < h.meta_len:
                return
            # Metadata is here, the payload is not: receive the rest in place.
            s = self._start
            self._meta = bytes(buf[s : s + h.meta_len])
            have = avail - h.meta_len
            self._direct = bytearray(h.payload_len + h.tag_len)
            self._direct[:have] = buf[s + h.meta_len : self._end]
            self._filled = have
            self._start = self._end = 0
            return

    def _finish_direct(self) -> None:
        h, body = self._header, self._direct
        assert h is not None and body is not None
        self._header, self._direct, self._filled = None, None, 0
        if h.tag_len:
            del body[h.payload_len :]
        self.on_frame(h.req_id, wire.decode_body(h, self._meta, body))
