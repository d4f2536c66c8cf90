"""UDP heartbeats: fast failure detection that steers traffic, never membership.

Every storage node answers beats on the UDP port numbered like its TCP port.
A client beats every node it knows a few times a second; a node that misses
``MISSES`` beats in a row is *suspect* (reads go around it, writes to handoffs)
until it answers again. ZooKeeper alone says whether a node is a member.

Beat: ``EMHB`` + u32 sequence; answer: ``EMHb`` + the same sequence.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable

import asyncio_dgram

log = logging.getLogger(__name__)

PING = b"EMHB"
PONG = b"EMHb"
_SEQ = struct.Struct("!I")
INTERVAL = 0.1  # seconds between beats
MISSES = 3  # beats missed in a row before a node is suspect


def beat(seq: int) -> bytes:
    return PING + _SEQ.pack(seq & 0xFFFFFFFF)


def answer(data: bytes) -> bytes | None:
    """The reply to a datagram, or None if it is not a beat."""
    if len(data) != 8 or data[:4] != PING:
        return None
    return PONG + data[4:]


def answered(data: bytes) -> int | None:
    """The sequence an answer carries, or None if it is not one."""
    if len(data) != 8 or data[:4] != PONG:
        return None
    seq: int = _SEQ.unpack(data[4:])[0]
    return seq


def _addr(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def serve(host: str, port: int) -> asyncio.Task[None]:
    """Answer beats on UDP ``host:port``; returns the task doing it."""
    stream = await asyncio_dgram.bind((host, port))

    async def loop() -> None:
        try:
            while True:
                data, peer = await stream.recv()
                reply = answer(data)
                if reply is not None:
                    try:
                        await stream.send(reply, peer)
                    except OSError:
                        pass  # the beater went away
        finally:
            stream.close()

    return asyncio.create_task(loop())


class Detector:
    """Beats nodes and reports those that stop (and start again) answering."""

    def __init__(
        self,
        addresses: Callable[[], dict[str, str]],
        on_change: Callable[[str, bool], None],
        interval: float = INTERVAL,
        misses: int = MISSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.addresses = addresses
        self.on_change = on_change
        self.interval = interval
        self.misses = misses
        self.clock = clock
        self.last: dict[str, float] = {}  # node -> when it last answered
        self.sent: dict[str, float] = {}  # node -> when we began beating it
        self.suspect: set[str] = set()
        self._by_addr: dict[tuple[str, int], str] = {}
        self.seq = 0
        self.last_round = 0.0

    def judge(self, now: float) -> None:
        """Mark nodes silent for ``misses`` beats suspect, answering ones healthy."""
        limit = self.interval * self.misses
        for node in list(self.sent):
            heard = max(self.last.get(node, 0.0), self.sent[node])
            silent = now - heard > limit
            if silent and node not in self.suspect:
                self.suspect.add(node)
                self.on_change(node, True)
            elif not silent and node in self.suspect:
                self.suspect.discard(node)
                self.on_change(node, False)

    def heard(self, node: str, now: float) -> None:
        self.last[node] = now

    async def run(self) -> None:
        stream = await asyncio_dgram.bind(("0.0.0.0", 0))
        receiver = asyncio.create_task(self._receive(stream))
        try:
            while True:
                now = self.clock()
                if self.last_round and now - self.last_round > self.interval * self.misses:
                    # Our loop was not running (a sync client between calls): silence
                    # we could not hear is not the nodes' fault. Start counting afresh.
                    self.sent = {n: now for n in self.sent}
                self.last_round = now
                nodes = self.addresses()
                self._by_addr = {}
                for node, address in nodes.items():
                    try:
                        addr = _addr(address)
                    except ValueError:
                        continue
                    self._by_addr[addr] = node
                    self.sent.setdefault(node, now)
                    try:
                        await stream.send(beat(self.seq), addr)
                    except OSError:
                        pass
                for gone in set(self.sent) - set(nodes):
                    self.sent.pop(gone, None)
                    self.last.pop(gone, None)
                    if gone in self.suspect:
                        self.suspect.discard(gone)
                        self.on_change(gone, False)
                self.seq += 1
                self.judge(now)
                await asyncio.sleep(self.interval)
        finally:
            receiver.cancel()
            stream.close()

    async def _receive(self, stream: asyncio_dgram.DatagramServer) -> None:
        while True:
            data, peer = await stream.recv()
            if not isinstance(peer, tuple):
                continue
            node = self._by_addr.get((str(peer[0]), int(peer[1])))
            if node is not None and answered(data) is not None:
                self.heard(node, self.clock())
