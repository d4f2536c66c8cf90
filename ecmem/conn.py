"""Client connections to storage nodes: framing, request correlation, a pool.

One connection per node, pipelined: every request gets an id and a future,
one protocol object resolves them as replies arrive, and a lost connection
fails every pending request with NodeUnavailable.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import checksum, wire
from .clientmetrics import ClientMetrics
from .errors import NodeTimeout, NodeUnavailable, ProtocolError
from .framing import FrameProtocol

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
REQUEST_TIMEOUT = 10.0


def read_targets(
    header: wire.FrameHeader, meta: Any, offset: int, into: memoryview
) -> list[memoryview] | None:
    """Where the payload of a Data reply to Get(offset, len(into)) goes: the bytes asked
    for straight into ``into``, the rest of their pages into small buffers of their own."""
    if header.kind != wire.Data.KIND:
        return None
    try:
        first_page = int(meta[2])
    except (TypeError, ValueError, IndexError):
        return None
    head = offset - first_page * checksum.PAGE
    tail = header.payload_len - head - len(into)
    if head < 0 or tail < 0:
        return None  # a short fragment: let the reader see it whole
    return [memoryview(bytearray(head)), into, memoryview(bytearray(tail))]


class NodeConnection(FrameProtocol):
    def __init__(self, node_id: str, address: str) -> None:
        super().__init__()
        self.node_id = node_id
        self.address = address
        self.incarnation = ""
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[wire.Message]] = {}
        # Reads that land straight in the caller's buffer: req id -> (fragment offset, dest).
        self._dests: dict[int, tuple[int, memoryview]] = {}
        self._reads: set[int] = set()  # requests that only read
        # Why every request fails at once: the node has been silent too long (heartbeats)
        self.unresponsive = ""

    def payload_targets(self, header: wire.FrameHeader, meta: Any) -> list[memoryview] | None:
        dest = self._dests.pop(header.req_id, None)
        if dest is None:
            return None
        return read_targets(header, meta, *dest)

    def on_frame(self, req_id: int, msg: wire.Message) -> None:
        fut = self._pending.pop(req_id, None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def on_protocol_error(self, exc: ProtocolError) -> None:
        log.error(
            "node %s at %s sent a bad frame, dropping connection: %s",
            self.node_id,
            self.address,
            exc,
        )
        self.abort()
        self._fail_all(f"sent a bad frame ({exc})")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._fail_all(f"connection lost ({exc or 'closed by peer'})")

    def _fail_all(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(
                    NodeUnavailable(
                        f"node {self.node_id} at {self.address}: {why}", node=self.node_id
                    )
                )

    def give_up(self, why: str, writes: bool = False) -> None:
        """Fail the requests in flight as timed out (the node stopped answering beats):
        reads at once, they are read around; writes (``writes``) only once the silence
        has lasted, as a node merely slow to answer beats should keep its fragments
        rather than see them go to a handoff."""
        if writes:
            self.unresponsive = why
        for req_id in [r for r in self._pending if writes or r in self._reads]:
            fut = self._pending.pop(req_id)
            if not fut.done():
                fut.set_exception(
                    NodeTimeout(f"node {self.node_id} at {self.address}: {why}", node=self.node_id)
                )

    async def request(
        self, msg: wire.Message, timeout: float = REQUEST_TIMEOUT, into: memoryview | None = None
    ) -> wire.Message:
        """Send a request and wait for its reply. With ``into``, the bytes a Get asked
        for are received straight into that buffer (the reply's payload is then the
        tuple (head, into, tail) of the whole pages sent)."""
        if self.closed:
            raise NodeUnavailable(
                f"node {self.node_id} at {self.address}: connection closed", node=self.node_id
            )
        if self.unresponsive:
            raise NodeTimeout(
                f"node {self.node_id} at {self.address}: {self.unresponsive}", node=self.node_id
            )
        req_id = next(self._ids) & 0xFFFFFFFF
        fut: asyncio.Future[wire.Message] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        if isinstance(msg, wire.Get):
            self._reads.add(req_id)
            if into is not None:
                self._dests[req_id] = (msg.offset, into)
        # A timer per request is much cheaper than asyncio.wait_for on this hot path.
        timer = asyncio.get_running_loop().call_later(timeout, _expire, fut, self, timeout)
        try:
            self.send(msg, req_id)
            if self._paused:
                # A node that stopped reading (paused, cut off) fills our buffer: wait for
                # room only while the request itself is still on (a timeout or a give-up
                # ends it), or it would wait for as long as the node stays silent.
                drained: asyncio.Future[Any] = asyncio.ensure_future(self.drain())
                either: set[asyncio.Future[Any]] = {drained, fut}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if not drained.done():
                    drained.cancel()
                elif (failed := drained.exception()) is not None:
                    raise failed
            return await fut
        except ConnectionError as exc:
            raise NodeUnavailable(
                f"node {self.node_id} at {self.address}: {exc}", node=self.node_id
            ) from exc
        finally:
            timer.cancel()
            self._pending.pop(req_id, None)
            self._dests.pop(req_id, None)
            self._reads.discard(req_id)


def _expire(fut: asyncio.Future[wire.Message], conn: NodeConnection, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(
            NodeTimeout(
                f"node {conn.node_id} at {conn.address} did not answer within {timeout:.1f}s",
                node=conn.node_id,
            )
        )


AddressBook = Callable[[str], str | None]


class ConnectionPool:
    """Connections by node id; addresses come from the cluster's node directory.

    A node that let a request time out is *suspect* for a while: healthy reads go
    around it instead of waiting on it again. ZooKeeper still decides membership.
    """

    SUSPECT_FOR = 5.0
    HEDGE_FOR = 1.0
    WRITES_WAIT = 2.0  # silent this long, a node's writes in flight are given up too

    def __init__(
        self, addresses: AddressBook, members: Callable[[], Iterable[str]] = tuple
    ) -> None:
        self._addresses = addresses
        self.members = members  # the live nodes' ids
        self._conns: dict[str, NodeConnection] = {}
        self._connecting: dict[str, asyncio.Future[NodeConnection]] = {}
        self._suspect_until: dict[str, float] = {}
        # Judged silent by heartbeats; written from the beater's thread too (set
        # updates are atomic), so a blocking client between calls sees it at once.
        self._silent: set[str] = set()
        self._warned: dict[str, float] = {}  # node -> when it was last logged as slow
        self.metrics = ClientMetrics()

    def suspect(self, node_id: str) -> None:
        now = time.monotonic()
        if self._warned.get(node_id, 0.0) + self.SUSPECT_FOR <= now:  # not once per read
            self._warned[node_id] = now
            log.warning(
                "node %s is slow to answer; reads go around it for %.0fs",
                node_id,
                self.SUSPECT_FOR,
            )
        self._suspect_until[node_id] = now + self.SUSPECT_FOR

    def hedged(self, node_id: str) -> None:
        """A small read gave up waiting on ``node_id`` after HEDGE_AFTER and read around
        it: go around it for a moment (quietly: one slow answer is no alarm)."""
        until = time.monotonic() + self.HEDGE_FOR
        if self._suspect_until.get(node_id, 0.0) < until:
            self._suspect_until[node_id] = until
        log.debug(
            "node %s slow to answer a small read; read around for %.0fs", node_id, self.HEDGE_FOR
        )

    def refused(self, node_id: str) -> None:
        """Nothing listens at ``node_id``'s address: its process is gone, though its
        registration may stay in ZooKeeper for a session timeout. Go around it (reads,
        and handoffs: a write must not hand a slot to it) for a moment."""
        until = time.monotonic() + self.SUSPECT_FOR
        if self._suspect_until.get(node_id, 0.0) < until:
            self._suspect_until[node_id] = until
            log.info("node %s refused a connection: going around it for now", node_id)

    def heartbeats(self, loop: asyncio.AbstractEventLoop) -> Callable[[str, bool], None]:
        """What the beater's thread calls on a change: marks the node at once, and has
        ``loop`` give up on its reads in flight when it next runs."""

        def on_change(node_id: str, silent: bool) -> None:
            if silent:
                self._silent.add(node_id)
                self.metrics.suspicions.inc()
            else:
                self._silent.discard(node_id)
            try:
                loop.call_soon_threadsafe(self.beats, node_id, silent)
            except RuntimeError:
                pass  # the loop is closed: the client is gone

        return on_change

    def beats(self, node_id: str, silent: bool) -> None:
        """Heartbeats say ``node_id`` went silent (or answers again)."""
        if silent:
            if node_id not in self._silent:
                return  # it answered again before this loop got to it
            log.warning(
                "node %s stopped answering heartbeats; reads go around it, and its writes "
                "go to handoffs if it stays silent for %.0fs",
                node_id,
                self.WRITES_WAIT,
            )
            conn = self._conns.get(node_id)
            if conn is not None:
                conn.give_up("stopped answering heartbeats")
            asyncio.get_running_loop().call_later(
                self.WRITES_WAIT, self._still_silent, node_id, conn
            )
        elif node_id not in self._silent:
            self._suspect_until.pop(node_id, None)
            conn = self._conns.get(node_id)
            if conn is not None:
                conn.unresponsive = ""
            log.info("node %s answers heartbeats again", node_id)

    def _still_silent(self, node_id: str, conn: NodeConnection | None) -> None:
        if node_id in self._silent and conn is not None and self._conns.get(node_id) is conn:
            log.warning(
                "node %s silent for %.0fs: its writes in flight go to handoffs",
                node_id,
                self.WRITES_WAIT,
            )
            conn.give_up(f"silent for {self.WRITES_WAIT:.0f}s", writes=True)

    def is_suspect(self, node_id: str) -> bool:
        if node_id in self._silent:
            return True
        until = self._suspect_until.get(node_id)
        if until is None:
            return False
        if time.monotonic() >= until:
            del self._suspect_until[node_id]
            return False
        return True

    async def get(self, node_id: str) -> NodeConnection:
        address = self._addresses(node_id)
        if address is None:
            raise NodeUnavailable(
                f"node {node_id} is not registered as live in ZooKeeper", node=node_id
            )
        conn = self._conns.get(node_id)
        if conn is not None and not conn.closed and conn.address == address:
            return conn
        pending = self._connecting.get(node_id)
        if pending is None:
            # A task of its own: a caller given up on (a degraded read takes the first k
            # answers and cancels the rest) must not cancel the connection for the others.
            pending = asyncio.ensure_future(self._open(node_id, address))
            self._connecting[node_id] = pending
            pending.add_done_callback(lambda f: self._connected(node_id, f))
        return await asyncio.shield(pending)

    async def _open(self, node_id: str, address: str) -> NodeConnection:
        conn = await self._connect(node_id, address)
        old = self._conns.pop(node_id, None)
        if old is not None:
            old.abort()
        self._conns[node_id] = conn
        return conn

    def _connected(self, node_id: str, fut: asyncio.Future[NodeConnection]) -> None:
        if self._connecting.get(node_id) is fut:
            del self._connecting[node_id]
        if not fut.cancelled():
            fut.exception()  # retrieved, for attempts no caller waits for any more

    async def _connect(self, node_id: str, address: str) -> NodeConnection:
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: NodeConnection(node_id, address), host, int(port)),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            if isinstance(exc, ConnectionRefusedError):
                self.refused(node_id)
            raise NodeUnavailable(
                f"cannot connect to node {node_id} at {address}: {exc or 'timed out'}",
                node=node_id,
            ) from exc
        # Learn who answers: a node restarted without its data has a new incarnation.
        reply = await conn.request(wire.Ping(), CONNECT_TIMEOUT)
        if isinstance(reply, wire.Ok):
            conn.incarnation = str(reply.info.get("incarnation", ""))
        return conn

    async def request(
        self,
        node_id: str,
        msg: wire.Message,
        timeout: float = REQUEST_TIMEOUT,
        into: memoryview | None = None,
    ) -> tuple[NodeConnection, wire.Message]:
        conn = await self.get(node_id)
        return conn, await conn.request(msg, timeout, into)

    def flush(self) -> None:
        """Write frames still corked (the loop stopped in the turn that sent them)."""
        for conn in self._conns.values():
            conn.flush()

    def close(self) -> None:
        for pending in list(self._connecting.values()):
            pending.cancel()
        for conn in self._conns.values():
            conn.abort()
        self._conns.clear()
