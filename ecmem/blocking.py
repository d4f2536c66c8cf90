"""Blocking connections to storage nodes, for the blocking client's small reads.

A small read is one request and one reply. Through an event loop that costs a
loop run, a task and several wake-ups; over a plain blocking socket it costs
two system calls, which measured at half the latency. Large and degraded I/O
stay on the asyncio path; this module only speaks the same sans-IO wire format.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable

from . import wire
from .conn import read_targets
from .errors import NodeTimeout, NodeUnavailable, ProtocolError
from .framing import tune_socket
from .stripes import HEDGE_AFTER

# A small read is answered in well under a millisecond; past HEDGE_AFTER the read goes
# around the node (its column decoded from the others) rather than stall the caller.
TIMEOUT = HEDGE_AFTER
CONNECT_TIMEOUT = 0.5


class BlockingConnection:
    def __init__(self, node_id: str, address: str, timeout: float = TIMEOUT) -> None:
        self.node_id = node_id
        self.address = address
        self.timeout = timeout
        self._ids = itertools.count(1)
        host, _, port = address.rpartition(":")
        try:
            self.sock = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            raise NodeUnavailable(
                f"cannot connect to node {node_id} at {address}: {exc}", node=node_id
            ) from exc
        tune_socket(self.sock)
        self.sock.settimeout(timeout)
        self._head = bytearray(wire.HEADER_SIZE)
        reply = self.request(wire.Ping())
        self.incarnation = (
            str(reply.info.get("incarnation", "")) if isinstance(reply, wire.Ok) else ""
        )

    def close(self) -> None:
        self.sock.close()

    def _recv_exactly(self, view: memoryview) -> None:
        got = 0
        while got < len(view):
            n = self.sock.recv_into(view[got:])
            if n == 0:
                raise ConnectionError("connection closed by the node")
            got += n

    def request(self, msg: wire.Message, into: memoryview | None = None) -> wire.Message:
        """One request, one reply; with ``into``, a Get's bytes land in it directly."""
        return self.receive(self.send(msg), msg, into)

    def send(self, msg: wire.Message) -> int:
        """Send a request (several nodes' at once, then each one's ``receive``)."""
        req_id = next(self._ids) & 0xFFFFFFFF
        try:
            self.sock.sendall(b"".join(bytes(b) for b in wire.encode(msg, req_id)))
        except OSError as exc:
            self.close()
            raise NodeUnavailable(
                f"node {self.node_id} at {self.address}: {exc}", node=self.node_id
            ) from exc
        return req_id

    def receive(
        self, req_id: int, msg: wire.Message | None = None, into: memoryview | None = None
    ) -> wire.Message:
        """The reply to request ``req_id`` (``msg``, for a Get's bytes to land ``into``)."""
        try:
            self._recv_exactly(memoryview(self._head))
            header = wire.parse_header(self._head, wire.DEFAULT_MAX_PAYLOAD)
            meta_raw = bytearray(header.meta_len)
            self._recv_exactly(memoryview(meta_raw))
            meta = wire.decode_meta(meta_raw)
            targets = None
            if into is not None and isinstance(msg, wire.Get):
                targets = read_targets(header, meta, msg.offset, into)
            if targets is None:
                body = bytearray(header.payload_len)
                targets = [memoryview(body)]
                payload: object = body
            else:
                payload = tuple(targets)
            for t in targets:
                self._recv_exactly(t)
            if header.tag_len:
                self._recv_exactly(memoryview(bytearray(header.tag_len)))
            if header.req_id != req_id:
                raise ProtocolError(f"reply to request {header.req_id}, expected {req_id}")
            return wire.build(header, meta, payload)
        except TimeoutError as exc:
            self.close()
            raise NodeTimeout(
                f"node {self.node_id} at {self.address} did not answer within {self.timeout:.1f}s",
                node=self.node_id,
            ) from exc
        except (OSError, ConnectionError, ProtocolError) as exc:
            self.close()
            raise NodeUnavailable(
                f"node {self.node_id} at {self.address}: {exc}", node=self.node_id
            ) from exc


class BlockingPool:
    def __init__(self, addresses: Callable[[str], str | None]) -> None:
        self._addresses = addresses
        self._conns: dict[str, BlockingConnection] = {}

    def get(self, node_id: str) -> BlockingConnection:
        address = self._addresses(node_id)
        if address is None:
            raise NodeUnavailable(f"node {node_id} is not registered as live", node=node_id)
        conn = self._conns.get(node_id)
        if conn is None or conn.address != address or conn.sock.fileno() < 0:
            conn = self._conns[node_id] = BlockingConnection(node_id, address)
        return conn

    def drop(self, node_id: str) -> None:
        conn = self._conns.pop(node_id, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
