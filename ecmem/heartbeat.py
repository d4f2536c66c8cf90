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
    """Beats nodes and reports those that stop (and start again) answering.

    A node is silent once ``misses`` beats in a row went unanswered, counting only
    rounds this loop really ran (a sync client's loop sleeps between calls).
    """

    def __init__(
        self,
        addresses: Callable[[], dict[str, str]],
        on_change: Callable[[str, bool], None],
        interval: float = INTERVAL,
        misses: int = MISSES,
    ) -> None:
        self.addresses = addresses
        self.on_change = on_change
        self.interval = interval
        self.misses = misses
        self.unanswered: dict[str, int] = {}  # node -> beats since its last answer
        self.suspect: set[str] = set()
        self._by_addr: dict[tuple[str, int], str] = {}
        self.seq = 0

    def judge(self) -> None:
        """Mark nodes that missed ``misses`` beats suspect, answering ones healthy."""
        for node, missed in self.unanswered.items():
            silent = missed >= self.misses
            if silent and node not in self.suspect:
                self.suspect.add(node)
                self.on_change(node, True)
            elif not silent and node in self.suspect:
                self.suspect.discard(node)
                self.on_change(node, False)

    def heard(self, node: str) -> None:
        if node in self.unanswered:
            self.unanswered[node] = 0
            if node in self.suspect:
                self.judge()

    def round(self, nodes: dict[str, str]) -> list[tuple[str, tuple[str, int]]]:
        """Start a round: judge the last one, and say whom to beat now."""
        self.judge()
        for gone in set(self.unanswered) - set(nodes):
            # Leaving the membership is no answer: a silent node stays suspect until it is
            # back and answers (its writes must not wait on it meanwhile).
            del self.unanswered[gone]
        out = []
        self._by_addr = {}
        for node, address in nodes.items():
            try:
                addr = _addr(address)
            except ValueError:
                continue
            self._by_addr[addr] = node
            back_silent = self.misses if node in self.suspect else 0
            self.unanswered[node] = self.unanswered.get(node, back_silent) + 1
            out.append((node, addr))
        return out

    async def run(self) -> None:
        stream = await asyncio_dgram.bind(("0.0.0.0", 0))
        receiver = asyncio.create_task(self._receive(stream))
        try:
            while True:
                for _, addr in self.round(self.addresses()):
                    try:
                        await stream.send(beat(self.seq), addr)
                    except OSError:
                        pass
                self.seq += 1
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
                self.heard(node)
