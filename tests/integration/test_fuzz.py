"""Random, truncated and oversized frames sent to a live node: it keeps serving."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import psutil
import pytest

from ecmem import wire
from ecmem.errors import ProtocolError
from ecmem.framedecoder import FrameDecoder
from tests.harness import TestCluster

RID = "00000000000000a1"  # a region id as a record names one

pytestmark = pytest.mark.integration


def node_address(cluster: TestCluster, node_id: str) -> tuple[str, int]:
    host, port = cluster.live()[node_id].address.rsplit(":", 1)
    return host, int(port)


def announce_put(payload_len: int) -> bytes:
    """A Put whose header and metadata are valid, announcing ``payload_len`` bytes."""
    meta = msgpack.packb([RID, 0, 0, 1, payload_len, 0, 0, 0, 0, 0, 0])
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
                wire.Get(RID, 0, 0, 0, 10, 0),
                wire.List("", 0),
                wire.Put(RID, 1, 0, 1, 100, 0, 1, 1, 0, 0, 0, b"x" * 100),
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


def closed_by_peer(s: socket.socket) -> bool:
    """Has the node closed this connection (EOF or reset), without waiting?"""
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_resource_attacks_are_bounded(cluster: TestCluster, tmp_path: Path) -> None:
    """Huge announced fragments, stalled frames, made-up regions and idle connections by
    the thousand: each bounded, and a well-behaved put still goes through."""
    node = cluster.node_ids[1]
    addr = node_address(cluster, node)
    proc = psutil.Process(cluster.pid(node))
    # A fragment of 2**40 bytes: refused from its metadata, nothing allocated.
    rss = proc.memory_info().rss
    t = time.perf_counter()
    for _ in range(20):
        with socket.create_connection(addr, timeout=2) as s:
            meta = msgpack.packb([RID, 0, 0, 1, 1 << 40, 0, 0, 0, 0, 0, 0])
            s.sendall(wire.HEADER.pack(b"EM", 1, wire.Put.KIND, 1, len(meta), 0, 0) + meta)
            assert s.recv(1) == b""  # closed: a bad frame
    assert (time.perf_counter() - t) / 20 < 0.05
    # Stalled 32 MiB frames: they hold the in-flight budget only until a frame that needs
    # room comes (stalled for a second, they are cut off), and each goes at its deadline.
    began = time.monotonic()
    stalled = []
    for _ in range(24):
        s = socket.create_connection(addr, timeout=2)
        with contextlib.suppress(OSError):
            s.sendall(announce_put(32 * 2**20 - 64) + b"\x00" * 65536)
        stalled.append(s)
    time.sleep(1.5)
    src = tmp_path / "eight"
    src.write_bytes(os.urandom(8 << 20))
    out = cluster.cli("put", str(src), "fuzz/stalled-room", "--policy", "ec:4+2")  # every node
    assert out.returncode == 0, out.stderr
    cl = cluster.client()
    try:
        assert cl.pread("fuzz/stalled-room", 0, 8 << 20) == src.read_bytes()
        # 200,000 fences for made-up regions: counted as the node's used bytes, not hidden.
        used = cluster.ask(node, wire.Stat())
        assert isinstance(used, wire.Ok)
        with socket.create_connection(addr, timeout=10) as s:
            for batch in range(200):
                frames = b"".join(
                    wire.encode_bytes(wire.Fence(f"{batch * 1000 + i + 1:015x}f", 1), i + 1)
                    for i in range(1000)
                )
                s.sendall(frames)
            s.settimeout(30)
            dec, replies = FrameDecoder(), []
            while len(replies) < 200_000:  # every reply read: all were answered
                chunk = s.recv(1 << 20)
                assert chunk
                replies += [m for _, m in dec.feed(chunk)]
        full = [m for m in replies if isinstance(m, wire.Error)]
        assert all(m.code == wire.E_NO_SPACE for m in full)
        after = cluster.ask(node, wire.Stat())
        assert isinstance(after, wire.Ok)
        states = after.info["regions"] - used.info["regions"]
        assert states == 200_000 or after.info["used"] >= after.info["capacity"] - 2**20
        assert after.info["used"] - used.info["used"] >= states * 512
        assert after.info["used"] <= after.info["capacity"]
        # Thousands of idle connections cost little, and the cap refuses more.
        rss = proc.memory_info().rss
        idle = [socket.create_connection(addr, timeout=5) for _ in range(3000)]
        time.sleep(0.5)
        grown = proc.memory_info().rss - rss
        assert grown < 32 * 2**20, f"3,000 idle connections took {grown >> 20} MiB"
        extra = [socket.create_connection(addr, timeout=5) for _ in range(1200)]
        time.sleep(0.5)
        refused = sum(closed_by_peer(s) for s in extra)
        assert refused >= 1200 - (4096 - 3000), refused  # the cap is 4,096
        for s in idle + extra:
            s.close()
        # Each stalled frame was closed: cut off for room, or at its 10 s deadline.
        time.sleep(max(0.0, began + 11.5 - time.monotonic()))
        assert all(closed_by_peer(s) for s in stalled)
        log = (cluster.local.logs / f"{node}.log").read_text()
        assert "stalled for" in log and "took over 10s" in log
        assert "refused a connection" in log
        counts = cluster.ask(node, wire.Stat())
        assert isinstance(counts, wire.Ok)
        assert counts.info["connections_refused"] >= 1200 - (4096 - 3000)
        assert counts.info["connections_timed_out"] + counts.info["connections_cut_for_room"] >= 1
        assert cl.pread("fuzz/stalled-room", 0, 16) == src.read_bytes()[:16]
    finally:
        for s in stalled:
            s.close()
        cl.delete_region("fuzz/stalled-room")
        cl.close()


def fuzzed_records(good: bytes, rng: random.Random, count: int) -> list[bytes]:
    """Region records as anyone with write access to ZooKeeper could leave them."""
    base = json.loads(good)
    wrong: list[object] = ["x", -1, 2**70, None, [], {}, True, 1.5, "0" * 100_000]
    out: list[bytes] = [b"", b"\xff\xfe", b"[]", b"null", b"{", b"[" * 5000 + b"]" * 5000]
    while len(out) < count:
        rec = dict(base)
        for key in rng.sample(sorted(rec), rng.randint(1, 3)):
            rec[key] = rng.choice(wrong)
        if rng.random() < 0.3:
            rec["slabs"] = {"0": [99, 98]}
        out.append(json.dumps(rec).encode())
    return out


def test_damaged_zookeeper_records_are_skipped_and_reported(cluster: TestCluster) -> None:
    rng = random.Random(15)
    cl = cluster.client()
    bad = [f"fuzz/bad{i:03d}" for i in range(100)]
    with cluster.meta() as md:
        try:
            cl.create_region("fuzz/good", 1 << 20, "ec:4+2")
            cl.pwrite("fuzz/good", 0, b"fine")
            cl.release("fuzz/good")
            good, _ = md.zk.get(md.paths.region("fuzz/good"))
            for name, raw in zip(bad, fuzzed_records(good, rng, len(bad)), strict=True):
                md.zk.create(md.paths.region(name), raw, makepath=True)
            md.zk.create(md.paths.node("ghost"), b'{"id": 7}', makepath=True)
            # A lease no session holds (a persistent znode) keeps no writer out.
            md.zk.create(md.paths.lease("fuzz/good"), b'{"holder": "nobody"}', makepath=True)
            t = time.monotonic()
            cl.pwrite("fuzz/good", 0, b"FINE")
            assert time.monotonic() - t < 5
            assert cl.pread("fuzz/good", 0, 4) == b"FINE"
            time.sleep(2.5)  # a coordinator pass or two over the damaged records
            out = cluster.cli("status")
            assert "Traceback" not in out.stderr + out.stdout, out.stderr
            assert "RECORD_DAMAGED" in out.stdout and "fuzz/bad" in out.stdout, out.stdout
            detail = cluster.cli("health", "detail")
            assert "damaged region record" in detail.stdout, detail.stdout
            listed = cluster.cli("region", "ls")
            assert "Traceback" not in listed.stderr and "fuzz/good" in listed.stdout, listed.stderr
            js = json.loads(cluster.cli("status", "--json").stdout)
            assert js["coordinators"] and js["coordinators"][0]["leader"], js
            assert psutil.pid_exists(cluster.state.coordinator_pid)
        finally:
            for name in bad:
                md.zk.delete(md.paths.region(name))
            md.zk.delete(md.paths.node("ghost"))
            cl.delete_region("fuzz/good")
            cl.close()


def mutated_frames(rng: random.Random, count: int) -> Iterator[bytes]:
    """Frames of every request kind with their metadata's fields changed (so most get
    past the header to the node's checks and handlers), or bytes flipped anywhere."""
    from crc32c import crc32c

    rid = f"{rng.getrandbits(64):016x}"
    page = b"p" * 100
    samples = [
        wire.Put(rid, 1, 0, 1 << 32 | 1, 100, crc32c(page), 1, 1, 0, 0, 0, page),
        wire.PutSlice(
            rid, 1, 0, 1 << 32 | 2, 100, 1 << 32 | 1, 0, crc32c(page[:10]), 1, 1, 0, 0, 0, page[:10]
        ),
        wire.Patch(rid, 1, 1, 4, 1 << 32 | 3, 0, crc32c(b"pg"), 1, 1, 0, 0, 0, b"pg"),
        wire.Patches(rid, 0, 0, [[1, 1, 4, 1 << 32 | 4, 0, crc32c(b"pg"), 1, 1, 0, 2]], b"pg"),
        wire.Get(rid, 1, 0, 0, 100, 0),
        wire.GetPatches(rid, 1, wire.ALL_INDEXES, 0, 0),
        wire.Delete(rid, 5, 1),
        wire.Repair(rid, 2, 0, 1 << 32 | 1, 100, crc32c(page), 2, 2, 0, 1, page),
        wire.RepairPatch(
            rid, 2, 1, 4, 1 << 32 | 1, 0, crc32c(b"pg"), 2, 2, 0, 1, 1 << 32 | 1, 0, b"pg"
        ),
        wire.List(rid, 0),
        wire.Stat(),
        wire.Ping(),
        wire.Commit(rid, 1 << 32 | 1, 0),
        wire.Discard(rid, 1 << 32 | 9, 1),
        wire.Fence(rid, 1),
        wire.Corrupt(rid, 1, 0, "flip", 3),
    ]
    odd: list[object] = [
        -1,
        0,
        1,
        2**31,
        2**63,
        2**64 - 1,
        "",
        "x" * 300,
        rid,
        None,
        1.5,
        [],
        {},
        b"\0",
    ]
    for n in range(count):
        msg = samples[n % len(samples)]
        if rng.random() < 0.6 and msg.NAMES:
            meta = msg.meta()
            for _ in range(rng.randint(1, 3)):
                meta[rng.randrange(len(meta))] = rng.choice(odd)
            body = msgpack.packb(meta, use_bin_type=True)
            payload = bytes(getattr(msg, "payload", b"") or b"")
            head = wire.HEADER.pack(b"EM", 1, msg.KIND, n + 1, len(body), len(payload), 0)
            yield head + body + payload
        else:
            frame = bytearray(wire.encode_bytes(msg, n + 1))
            for _ in range(rng.randint(1, 4)):
                frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
            yield bytes(frame)


def test_a_hundred_thousand_mutated_frames(cluster: TestCluster) -> None:
    """Seeded mutations of every request kind: the node answers or closes, never hits
    an internal error, stays up, and its memory barely grows."""
    node = cluster.node_ids[2]
    addr = node_address(cluster, node)
    proc = psutil.Process(cluster.pid(node))
    rss = proc.memory_info().rss
    errors_before = cluster.ask(node, wire.Stat())
    rng = random.Random(100_000)
    internal = closed = 0
    frames = mutated_frames(rng, 100_000)
    s = socket.create_connection(addr, timeout=10)
    dec = FrameDecoder()
    batch: list[bytes] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) < 200:
            continue
        try:
            s.sendall(b"".join(batch))
            s.settimeout(0.05)
            chunk = b"-"
            with contextlib.suppress(TimeoutError, BlockingIOError):
                while chunk:
                    chunk = s.recv(1 << 20)
                    internal += sum(
                        isinstance(m, wire.Error) and m.code == wire.E_INTERNAL
                        for _, m in dec.feed(chunk)
                    )
            if not chunk:  # closed by the node
                raise ConnectionResetError
        except (OSError, ProtocolError):  # the node closed on a bad frame: go on anew
            closed += 1
            s.close()
            s = socket.create_connection(addr, timeout=10)
            dec = FrameDecoder()
        batch = []
    s.close()
    assert internal == 0
    assert proc.is_running()
    reply = cluster.ask(node, wire.Ping())
    assert isinstance(reply, wire.Ok)
    grown = proc.memory_info().rss - rss
    assert grown < 16 * 2**20, f"memory grew by {grown >> 20} MiB"
    log = (cluster.local.logs / f"{node}.log").read_text()
    assert "internal error" not in log
    after = cluster.ask(node, wire.Stat())
    assert isinstance(after, wire.Ok) and isinstance(errors_before, wire.Ok)
    assert after.info["protocol_errors"] > errors_before.info["protocol_errors"]
    assert closed > 0


def test_fragments_erased_on_every_holder_never_read_as_zeros(
    cluster: TestCluster, tmp_path: Path
) -> None:
    """A Delete sent to every holder (anyone could, before authentication): ``ecmem
    get`` fails and names the loss; it never writes zeros for written bytes."""
    src = tmp_path / "kept"
    src.write_bytes(os.urandom(1 << 20))
    assert cluster.cli("put", str(src), "fuzz/erased", "--policy", "ec:4+2").returncode == 0
    with cluster.client() as cl:
        meta = cl.region_meta("fuzz/erased")
        for node, _ in meta.slabs[0]:
            assert isinstance(cluster.ask(node, wire.Delete(meta.id, 0, 0)), wire.Ok)
        out = cluster.cli("get", "fuzz/erased", str(tmp_path / "back"))
        assert out.returncode != 0
        assert "lost" in out.stderr and "Traceback" not in out.stderr, out.stderr
        back = tmp_path / "back"
        assert not back.exists() or back.read_bytes() != bytes(back.stat().st_size)
        cl.delete_region("fuzz/erased")
