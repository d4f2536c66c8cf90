"""asyncio framing for the wire format, shared by nodes and clients.

A BufferedProtocol: small frames are parsed out of one scratch buffer, and
the payload of a large frame is received straight into its own buffer, so
fragment bytes are copied once from the kernel and never again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from . import wire
from .errors import ProtocolError

log = logging.getLogger(__name__)

SCRATCH = 128 * 1024
CORK_MAX = 64 * 1024  # frames up to this size wait for the end of the loop's turn


STALLED = 1.0  # seconds without a byte of its frame before a holder may be cut off


class Budget:
    """Bytes of payload that partly received frames may hold, shared by connections,
    so that many peers announcing large frames cannot exhaust memory. A frame that finds
    it spent cuts off the holders whose frames stopped arriving (a peer that announces
    a frame and stalls must not starve the others until its deadline)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.holders: set[FrameProtocol] = set()
        self.reclaimed = 0  # connections cut off to make room

    def take(self, n: int, who: FrameProtocol | None = None) -> bool:
        if self.used + n > self.limit:
            self._reclaim(n)
            if self.used + n > self.limit:
                return False
        self.used += n
        if who is not None:
            self.holders.add(who)
        return True

    def give(self, n: int, who: FrameProtocol | None = None) -> None:
        self.used -= n
        if who is not None:
            self.holders.discard(who)

    def _reclaim(self, n: int) -> None:
        now = time.monotonic()
        stalled = sorted(
            (h for h in self.holders if now - h.last_data > STALLED and not h.held_back),
            key=lambda h: h.last_data,
        )
        for h in stalled:
            if self.used + n <= self.limit:
                return
            log.warning(
                "closing connection from %s: its %d-byte frame stalled for %.1fs while "
                "others wait for room",
                h.peer_name(),
                h.reserved,
                now - h.last_data,
            )
            self.reclaimed += 1
            h.abort()


SOCKET_BUFFER = 4 * 1024 * 1024


def tune_socket(sock: socket.socket) -> None:
    """Large buffers: fragments are hundreds of KiB, and every wake-up costs."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    except OSError as exc:  # e.g. a socket type without these options
        log.debug("could not tune socket: %s", exc)


FrameHandler = Callable[[int, wire.Message], None]


class FrameProtocol(asyncio.BufferedProtocol):
    """Turns a byte stream into (request id, message) calls of ``on_frame``."""

    def __init__(
        self, max_payload: int = wire.DEFAULT_MAX_PAYLOAD, budget: Budget | None = None
    ) -> None:
        self.max_payload = max_payload
        self.budget = budget
        self.reserved = 0
        self.transport: asyncio.Transport | None = None
        self._scratch = bytearray(0)  # allocated at the first byte: idle peers cost little
        self.last_data = time.monotonic()  # when a byte last arrived
        self.frame_began = 0.0  # when the first byte of a frame not yet whole came (0: none)
        self.held_back = False  # reading paused by this end (its peer is not slow)
        self._start = 0
        self._end = 0
        self._header: wire.FrameHeader | None = None
        self._meta: Any = None
        self._targets: list[memoryview] = []
        self._target = 0
        self._filled = 0
        self._scattered = False
        self._paused = False
        self._gathers = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.closed = False
        # Small frames sent in one turn of the event loop leave in one write (one system
        # call) at the end of it, not one or two each.
        self._corked: list[bytes | bytearray | memoryview] = []
        self._corked_bytes = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- hooks for subclasses ---------------------------------------------------

    def on_frame(self, req_id: int, msg: wire.Message) -> None:
        raise NotImplementedError

    def payload_targets(self, header: wire.FrameHeader, meta: Any) -> list[memoryview] | None:
        """Buffers to receive a payload into, in order, adding up to its length; None
        lets the protocol allocate one buffer."""
        return None

    def on_protocol_error(self, exc: ProtocolError) -> None:
        log.warning("closing connection from %s: %s", self.peer_name(), exc)
        self.abort()

    def peer_name(self) -> object:
        return self.transport.get_extra_info("peername") if self.transport else None

    # -- asyncio protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence the cast.
        self.transport = cast(asyncio.Transport, transport)
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # driven by hand (tests): frames are written at once
            self._loop = None
        self._gathers = type(transport).__module__.startswith("uvloop")  # writev underneath
        sock = transport.get_extra_info("socket")
        if sock is not None:
            tune_socket(sock)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._corked, self._corked_bytes = [], 0
        self._targets = []
        self._release()
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
        bufs = wire.encode(msg, req_id)
        size = sum(memoryview(b).nbytes for b in bufs)
        if self._loop is not None and size <= CORK_MAX:
            if not self._corked:
                self._loop.call_soon(self.flush)
            self._corked += bufs
            self._corked_bytes += size
            if self._corked_bytes >= CORK_MAX:
                self.flush()
            return
        self.flush()
        if self._gathers or len(bufs) == 1:
            self.transport.writelines(bufs)
        else:
            # The standard loop's writelines joins its buffers: a copy of every payload.
            for buf in bufs:
                self.transport.write(buf)

    def flush(self) -> None:
        """Write the frames corked so far."""
        if not self._corked:
            return
        bufs, self._corked, self._corked_bytes = self._corked, [], 0
        if self.transport is None or self.closed:
            return
        if self._gathers:
            self.transport.writelines(bufs)
        else:
            self.transport.write(b"".join(bufs))

    def abort(self) -> None:
        self.closed = True
        self._corked, self._corked_bytes = [], 0
        self._release()
        if self.transport is not None:
            self.transport.abort()

    def trim(self) -> None:
        """Give the read buffer back while nothing is half read (an idle connection)."""
        if not self._targets and self._header is None and self._start == self._end:
            self._scratch = bytearray(0)
            self._start = self._end = 0

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._targets:
            return self._targets[self._target][self._filled :]
        if not self._scratch:
            self._scratch = bytearray(SCRATCH)
        if self._start == self._end:
            self._start = self._end = 0
        elif len(self._scratch) - self._end < wire.MAX_META:
            pending = self._scratch[self._start : self._end]
            self._scratch[: len(pending)] = pending
            self._start, self._end = 0, len(pending)
        return memoryview(self._scratch)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self.last_data = time.monotonic()
        if not self.frame_began:
            self.frame_began = self.last_data
        try:
            if self._targets:
                self._filled += nbytes
                if self._filled == len(self._targets[self._target]):
                    self._target += 1
                    self._filled = 0
                    while self._target < len(self._targets) and not self._targets[self._target]:
                        self._target += 1
                    if self._target == len(self._targets):
                        self._finish_targets()
                return
            self._end += nbytes
            self._parse_scratch()
        except ProtocolError as exc:
            self.on_protocol_error(exc)

    def eof_received(self) -> bool | None:
        return None

    # -- parsing ----------------------------------------------------------------

    def _parse_scratch(self) -> None:
        buf = memoryview(self._scratch)
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
            if avail < h.meta_len:
                return
            s = self._start
            meta = wire.decode_meta(buf[s : s + h.meta_len])
            plen = h.payload_len + h.tag_len
            targets = self.payload_targets(h, meta) if h.payload_len else None
            if targets is None:
                if plen and self.budget is not None and avail - h.meta_len < plen:
                    if not self.budget.take(plen, self):
                        raise ProtocolError(
                            f"payload of {plen} bytes would exceed the {self.budget.limit}-byte "
                            "budget for frames in flight"
                        )
                    self.reserved = plen
                targets = [memoryview(bytearray(plen))] if plen else []
                scattered = False
            else:
                if h.tag_len:
                    targets.append(memoryview(bytearray(h.tag_len)))
                scattered = True
            # Hand over what is already here, then receive the rest in place.
            have = min(avail - h.meta_len, plen)
            pos = s + h.meta_len
            t = filled = 0
            while have:
                take = min(have, len(targets[t]) - filled)
                targets[t][filled : filled + take] = buf[pos : pos + take]
                pos += take
                have -= take
                filled += take
                if filled == len(targets[t]):
                    t += 1
                    filled = 0
            self._start = pos
            while t < len(targets) and not targets[t]:
                t += 1
            self._meta, self._scattered = meta, scattered
            if t == len(targets):
                self._targets = targets
                self._finish_targets()
                continue
            self._targets, self._target, self._filled = targets, t, filled
            if self._start == self._end:
                self._start = self._end = 0
            return

    def _release(self) -> None:
        if self.reserved and self.budget is not None:
            self.budget.give(self.reserved, self)
        self.reserved = 0

    def _finish_targets(self) -> None:
        self._release()
        # The next frame began with this one's last read if its bytes came along.
        self.frame_began = self.last_data if self._end > self._start else 0.0
        h, targets = self._header, self._targets
        assert h is not None
        self._header, self._targets, self._target, self._filled = None, [], 0, 0
        payload: Any
        if self._scattered:
            payload = tuple(targets[:-1] if h.tag_len else targets)
        elif h.payload_len:
            # Tags are rare (authentication is not on yet), so a copy is fine there.
            payload = bytes(targets[0][: h.payload_len]) if h.tag_len else targets[0].obj
        else:
            payload = b""
        self.on_frame(h.req_id, wire.build(h, self._meta, payload))
