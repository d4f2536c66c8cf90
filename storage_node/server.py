"""Adapts a FragmentStore to the network: one FrameProtocol per connection."""

from __future__ import annotations

import asyncio
import logging
import time

from ecmem import wire
from ecmem.errors import ProtocolError
from ecmem.framing import Budget, FrameProtocol
from ecmem.logs import Tally

from .errors import StoreError
from .metrics import NodeMetrics
from .patches import Patch
from .store import FragmentStore

log = logging.getLogger(__name__)

# A fragment is at most a 16 MiB chunk plus codec header; anything larger is hostile.
MAX_PAYLOAD = 32 * 1024 * 1024
# Frames announced but not yet received in full, over all connections.
IN_FLIGHT = 256 * 1024 * 1024
MAX_CONNECTIONS = 4096  # more are refused at once (each costs a socket and, once used, 128 KiB)
FRAME_DEADLINE = 10.0  # seconds from a frame's first byte to its last (32 MiB at 3.2 MB/s)
IDLE_TIMEOUT = 900.0  # seconds a connection may send nothing (clients reconnect on need)
SWEEP_EVERY = 1.0
TRIM_AFTER = 10.0  # seconds idle before a connection's read buffer is given back


class NodeServer:
    """Serves one store; counts connections and requests for ``stat``."""

    def __init__(self, store: FragmentStore, node_id: str, *, allow_debug: bool = False) -> None:
        self.store = store
        self.node_id = node_id
        self.allow_debug = allow_debug
        self.started = time.time()
        self.requests = 0
        self.protocol_errors = 0
        self.incarnation = ""
        self.budget = Budget(IN_FLIGHT)
        self.metrics: NodeMetrics | None = None
        self.max_connections = MAX_CONNECTIONS
        self.frame_deadline = FRAME_DEADLINE
        self.idle_timeout = IDLE_TIMEOUT
        self.open: set[NodeProtocol] = set()
        self.refused = 0  # connections refused over the cap
        self.timed_out = 0  # connections closed at a frame's deadline or idle
        self._sweeper: asyncio.Task[None] | None = None
        self.refusals = Tally(log, 60.0)

    def protocol(self) -> NodeProtocol:
        return NodeProtocol(self)

    async def listen(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep_forever())
        return await loop.create_server(self.protocol, host, port, reuse_address=True)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> None:
        """Close connections whose frame outlived its deadline or that sent nothing for
        the idle timeout: a peer that stalls holds a socket and budget others need."""
        for p in list(self.open):
            if now - p.last_data > TRIM_AFTER:
                p.trim()
            if p.held_back:
                continue  # this node paused its reading: the peer is not to blame
            if p.frame_began and now - p.frame_began > self.frame_deadline:
                why = f"its frame took over {self.frame_deadline:.0f}s"
            elif now - p.last_data > self.idle_timeout:
                why = f"it sent nothing for {self.idle_timeout:.0f}s"
            else:
                continue
            self.timed_out += 1
            log.info("closing connection from %s: %s", p.peer, why)
            p.abort()

    def handle(self, msg: wire.Message) -> wire.Message:
        if self.metrics is None:
            return self._handle(msg)
        start = time.perf_counter()
        reply = self._handle(msg)
        self.metrics.observe(
            type(msg).__name__,
            time.perf_counter() - start,
            reply.code if isinstance(reply, wire.Error) else "",
            len(msg.payload)
            if isinstance(msg, wire.Put | wire.PutSlice | wire.Repair | wire.Patches)
            else 0,
        )
        return reply

    def _patches(self, msg: wire.Patches) -> wire.Message:
        """Each patch of the frame as its own Patch; those refused, by entry number."""
        failed = []
        for n, (e, chunk) in enumerate(msg.items()):
            stripe, index, holder, version, at, crc, first, last, end, _ = e
            try:
                self.store.put_patch(
                    msg.region, stripe, index, holder, version, at, crc, bytes(chunk),
                    (first, last, end), msg.lac, msg.base,
                )  # fmt: skip
            except StoreError as exc:
                failed.append([n, exc.code, str(exc)])
        return wire.Ok({"failed": failed})

    def _handle(self, msg: wire.Message) -> wire.Message:
        self.requests += 1
        store = self.store
        try:
            if isinstance(msg, wire.Get):
                r = store.get(
                    msg.region,
                    msg.stripe,
                    msg.index,
                    msg.offset,
                    msg.length,
                    msg.version,
                    msg.asof,
                    bool(msg.raw),
                )
                wfirst, wlast, _ = r.write
                wcount = wlast - wfirst + 1 if wfirst >= 0 else 0
                return wire.Data(
                    r.version,
                    r.fragment_len,
                    r.first_page,
                    r.crcs,
                    max(wfirst, 0),
                    wcount,
                    r.pending,
                    r.patched,
                    r.data,
                )
            if isinstance(msg, wire.Patch):
                store.put_patch(
                    msg.region,
                    msg.stripe,
                    msg.index,
                    msg.holder,
                    msg.version,
                    msg.at,
                    msg.crc,
                    bytes(msg.payload),
                    (msg.first, msg.last, msg.end),
                    msg.lac,
                    msg.base,
                )
                return wire.Ok({})
            if isinstance(msg, wire.Patches):
                return self._patches(msg)
            if isinstance(msg, wire.GetPatches):
                which = None if msg.index == wire.ALL_INDEXES else msg.index
                found = store.patches_of(msg.region, msg.stripe, which, msg.after, msg.asof)
                return wire.PatchList(
                    [[p.version, p.index, p.at, len(p.data), *p.write] for p in found],
                    store.stripe_base(msg.region, msg.stripe),
                    b"".join(p.data for p in found),
                )
            if isinstance(msg, wire.Put):
                data = (
                    msg.payload if not isinstance(msg.payload, memoryview) else bytes(msg.payload)
                )
                store.put(
                    msg.region,
                    msg.stripe,
                    msg.index,
                    msg.version,
                    msg.length,
                    msg.crc,
                    data,
                    (msg.first, msg.last, msg.end),
                    msg.lac,
                    msg.base,
                )
                return wire.Ok({})
            if isinstance(msg, wire.PutSlice):
                store.put_slice(
                    msg.region,
                    msg.stripe,
                    msg.index,
                    msg.version,
                    msg.length,
                    msg.source,
                    msg.at,
                    msg.crc,
                    bytes(msg.payload),
                    (msg.first, msg.last, msg.end),
                    msg.lac,
                    msg.base,
                )
                return wire.Ok({})
            if isinstance(msg, wire.Repair):
                stored = store.repair(
                    msg.region,
                    msg.stripe,
                    msg.index,
                    msg.version,
                    msg.length,
                    msg.crc,
                    bytes(msg.payload),
                    (msg.first, msg.last, msg.end),
                    msg.epoch,
                )
                return wire.Ok({"stored": stored})
            if isinstance(msg, wire.RepairPatch):
                kept = store.repair_patch(
                    msg.region,
                    msg.stripe,
                    msg.holder,
                    Patch(
                        msg.version,
                        msg.index,
                        msg.at,
                        bytes(msg.payload),
                        (msg.first, msg.last, msg.end),
                    ),
                    msg.crc,
                    msg.epoch,
                    msg.lac,
                    msg.base,
                )
                return wire.Ok({"kept": kept})
            if isinstance(msg, wire.Delete):
                deleted = store.delete(msg.region, msg.from_stripe, msg.epoch, msg.until, msg.upto)
                return wire.Ok({"deleted": deleted})
            if isinstance(msg, wire.Fence):
                epoch, lac = store.fence(msg.region, msg.epoch)
                return wire.Ok({"epoch": epoch, "lac": lac})
            if isinstance(msg, wire.List):
                if msg.staged == 2:
                    return wire.Listing(list(store.patch_entries(msg.region)))
                return wire.Listing(list(store.entries(msg.region, bool(msg.staged))))
            if isinstance(msg, wire.Commit):
                store.check_epoch(msg.region, wire.epoch_of(msg.upto))
                return wire.Ok({"lac": store.commit(msg.region, msg.upto, msg.base)})
            if isinstance(msg, wire.Discard):
                store.check_epoch(msg.region, msg.epoch)
                return wire.Ok({"discarded": store.discard(msg.region, msg.above)})
            if isinstance(msg, wire.Stat):
                info: dict[str, object] = dict(store.stats())
                info.update(
                    id=self.node_id,
                    incarnation=self.incarnation,
                    uptime=time.time() - self.started,
                    connections=len(self.open),
                    connections_refused=self.refused,
                    connections_timed_out=self.timed_out,
                    connections_cut_for_room=self.budget.reclaimed,
                    requests=self.requests,
                    protocol_errors=self.protocol_errors,
                )
                return wire.Ok(info)
            if isinstance(msg, wire.Ping):
                return wire.Ok({"incarnation": self.incarnation})
            if isinstance(msg, wire.Corrupt):
                if not self.allow_debug:
                    return wire.Error(
                        wire.E_DENIED,
                        "debug requests are refused: start the node with --allow-debug to use them",
                    )
                store.corrupt(msg.region, msg.stripe, msg.index, msg.mode, msg.offset)
                return wire.Ok({})
            return wire.Error(wire.E_BAD_REQUEST, f"{type(msg).__name__} is not a request")
        except StoreError as exc:
            return wire.Error(exc.code, str(exc))


class NodeProtocol(FrameProtocol):
    def __init__(self, server: NodeServer) -> None:
        super().__init__(MAX_PAYLOAD, server.budget)
        self.server = server
        self.peer: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.peer = transport.get_extra_info("peername")
        server = self.server
        if len(server.open) >= server.max_connections:
            server.refused += 1
            server.refusals.warn(
                "this node",
                "connections refused",
                0,
                "refused a connection from %s: %d connections are open, the most this node "
                "takes; look for a client that leaks connections",
                self.peer,
                len(server.open),
            )
            self.abort()
            return
        server.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.server.open.discard(self)

    def on_protocol_error(self, exc: ProtocolError) -> None:
        self.server.protocol_errors += 1
        log.warning("closing connection from %s: bad frame: %s", self.peer, exc)
        self.abort()

    # Stop reading from a client that does not read its replies, so that
    # replies cannot pile up in memory without bound.
    def pause_writing(self) -> None:
        super().pause_writing()
        if self.transport is not None:
            self.transport.pause_reading()
            self.held_back = True

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()
            self.held_back = False
            self.last_data = time.monotonic()  # its clocks start again
            self.frame_began = self.last_data if self.frame_began else 0.0

    def on_frame(self, req_id: int, msg: wire.Message) -> None:
        try:
            reply = self.server.handle(msg)
        except Exception:  # one bad request must not take the node down
            log.exception("internal error serving %s from %s", type(msg).__name__, self.peer)
            reply = wire.Error(wire.E_INTERNAL, "internal error on the node; see its log")
        if not self.closed:
            self.send(reply, req_id)
