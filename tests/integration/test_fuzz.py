"""Random, truncated and oversized frames sent to a live node: it keeps serving."""

from __future__ import annotations

import os
import random
import socket
import struct
import time

import msgpack
import psutil
import pytest

from ecmem import wire
from tests.harness import TestCluster

pytestmark = pytest.mark.integration


def node_address(cluster: TestCluster, node_id: str) -> tuple[str, int]:
    host, port = cluster.live()[node_id].address.rsplit(":", 1)
    return host, int(port)


def announce_put(payload_len: int) -> bytes:
    """A Put whose header and metadata are valid, announcing ``payload_len`` bytes."""
    meta = msgpack.packb(["fuzz", 0, 0, 1, payload_len, 0, 0, 0, 0, 0, 0])
    return wire.HEADER.pack(b"EM", 1, wire.Put.KIND, 1, len(meta), payload_len, 0) + meta


def send_and_close(addr: tuple[str, int], data: bytes, linger: float = 0.0) -> None:
    with socket.create_connection(addr, timeout=2) as s:
        try:
            s.sendall(data)
            if linger:
                time.sleep(linger)
        except OSError:
            pass  # the node may close on us mid-send, which is the point


def test_fuzzed_frames_do_not_hurt_the_node(cluster: TestCluster) -> None:
    node = cluster.node_ids[0]
    addr = node_address(cluster, node)
    proc = psutil.Process(cluster.pid(node))
    rss_before = proc.memory_info().rss
    cl = cluster.client()
    try:
        cl.create_region("fuzz/victim", 0, "rep:3")
        cl.pwrite("fuzz/victim", 0, b"still here")
        rng = random.Random(7)
        good = [
            wire.encode_bytes(m, 1)
            for m in (
                wire.Ping(),
                wire.Stat(),
                wire.Get("abc", 0, 0, 0, 10, 0),
                wire.List("", 0),
                wire.Put("abc", 1, 0, 1, 100, 0, 1, 1, 0, 0, 0, b"x" * 100),
            )
        ]
        sent = 0
        for i in range(300):
            kind = i % 6
            if kind == 0:  # random bytes
                data = os.urandom(rng.randint(1, 4000))
            elif kind == 1:  # a valid frame cut short
                f = rng.choice(good)
                data = f[: rng.randint(1, len(f) - 1)]
            elif kind == 2:  # a valid frame with bytes flipped
                data = bytearray(rng.choice(good))
                for _ in range(3):
                    data[rng.randrange(len(data))] ^= rng.randint(1, 255)
                data = bytes(data)
            elif kind == 3:  # a header announcing far too much
                data = announce_put(2**31)
            elif kind == 4:  # announcing a large but allowed payload, then vanishing
                data = announce_put(30 * 2**20)
            else:  # metadata length over the limit
                data = struct.pack("!2sBBIIIH", b"EM", 1, 2, 1, 2**30, 0, 0)
            send_and_close(addr, data)
            sent += 1
        # Many connections announcing big frames at once: bounded by the in-flight budget.
        socks = []
        for _ in range(40):
            s = socket.create_connection(addr, timeout=2)
            try:
                s.sendall(announce_put(30 * 2**20))
                s.sendall(b"\x00" * 65536)
            except OSError:
                pass
            socks.append(s)
        time.sleep(0.5)
        # Meanwhile a well-behaved client is served normally.
        assert cl.pread("fuzz/victim", 0, 100) == b"still here"
        peak = proc.memory_info().rss
        for s in socks:
            s.close()
        assert proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        assert peak - rss_before < 400 * 2**20, f"RSS grew by {(peak - rss_before) >> 20} MiB"
        # The node says why it closed connections.
        deadline = time.monotonic() + 10
        while True:
            log = (cluster.local.logs / f"{node}.log").read_text()
            if "budget" in log or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "bad frame" in log
        assert "budget for frames in flight" in log
        cl.pwrite("fuzz/victim", 0, b"STILL HERE")
        assert cl.pread("fuzz/victim", 0, 100) == b"STILL HERE"
        assert sent == 300
    finally:
        cl.delete_region("fuzz/victim")
        cl.close()
