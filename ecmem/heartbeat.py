"""UDP heartbeats: fast failure detection that steers traffic, never membership.

Every storage node answers beats on the UDP port numbered like its TCP port.
A client beats every node it knows ten times a second; a node whose answers stop
for longer than their own history makes likely (``ecmem/phi.py``) is *suspect*:
reads go around it at once, its writes in flight go to handoffs only if it stays
silent (``ConnectionPool.WRITES_WAIT``). ZooKeeper alone says whether a node is a
member. Both ends beat and answer from threads of their own, so a busy event loop
is never taken for a dead node.

Beat: ``EMHB`` + u32 sequence; answer: ``EMHb`` + the same sequence.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

from . import phi

PING = b"EMHB"
PONG = b"EMHb"
_SEQ = struct.Struct("!I")
POLL = 0.2  # seconds a responder waits for a beat before looking whether to stop


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


class Responder:
    """Answers beats on UDP ``host:port`` from a thread of its own: the answer says the
    process is alive and scheduled, however busy its event loop is with large frames
    (a stuck loop is found by request timeouts, not by beats)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(POLL)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ecmem-beats", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(64)
            except OSError:  # timed out (look at the stop flag), or a stray error
                continue
            reply = answer(data)
            if reply is not None:
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    pass  # the beater went away

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * POLL)
        self.sock.close()


def serve(host: str, port: int) -> Responder:
    """Answer beats on UDP ``host:port`` until the returned responder is closed."""
    return Responder(host, port)


def probe(address: str, timeout: float = 1.0) -> bool:
    """Whether the node at ``address`` answers a beat within ``timeout`` (a few tries:
    a datagram may be lost). For commands that must tell a dead node from a live one."""
    try:
        addr = _addr(address)
    except ValueError:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        deadline = time.monotonic() + timeout
        seq = 0
        while (left := deadline - time.monotonic()) > 0:
            try:
                sock.sendto(beat(seq), addr)
                sock.settimeout(min(left, phi.INTERVAL * 2))
                data = sock.recv(64)
            except TimeoutError:
                seq += 1
                continue
            except OSError:  # refused (nothing bound there), or no route
                time.sleep(min(max(left, 0), phi.INTERVAL))
                seq += 1
                continue
            if answered(data) is not None:
                return True
    return False


class Beater:
    """Beats every node ``addresses()`` names from a thread of its own and feeds the
    answers to a ``phi.Detector``: the client's own event loop may stall on a large
    encode, or not run at all between a blocking client's calls, and neither makes a
    node look silent. ``on_change(node, silent)`` is called from this thread."""

    def __init__(
        self,
        addresses: Callable[[], dict[str, str]],
        on_change: Callable[[str, bool], None],
        interval: float = phi.INTERVAL,
    ) -> None:
        self.addresses = addresses
        self.detector = phi.Detector(on_change, interval)
        self.interval = interval
        self._by_addr: dict[tuple[str, int], str] = {}
        self._known: dict[str, str] = {}
        self._stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))
        self._thread = threading.Thread(target=self._run, name="ecmem-beater", daemon=True)

    def start(self) -> Beater:
        self._thread.start()
        return self

    def _members(self) -> dict[str, str]:
        try:
            self._known = dict(self.addresses())
        except RuntimeError:
            pass  # changed under us by the membership watch: last round's list will do
        return self._known

    def _run(self) -> None:
        seq = 0
        due = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now < due:
                self.sock.settimeout(due - now)
                try:
                    data, peer = self.sock.recvfrom(64)
                except OSError:  # timed out: due now (or told to stop)
                    continue
                node = self._by_addr.get((str(peer[0]), int(peer[1])))
                if node is not None and answered(data) is not None:
                    self.detector.heard(node, time.monotonic())
                continue
            # Due, and nothing waits in the socket (recv timed out): judge, then beat.
            self._by_addr = {}
            for node in self.detector.round(self._members(), now):
                try:
                    addr = _addr(self._known[node])
                    self._by_addr[addr] = node
                    self.sock.sendto(beat(seq), addr)
                except (ValueError, OSError):
                    pass
            seq += 1
            due = now + self.interval

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * POLL)
        self.sock.close()
