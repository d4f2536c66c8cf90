"""The asyncio framing protocol, driven by hand with a fake transport."""

from __future__ import annotations

import random
from typing import Any

from ecmem import wire
from ecmem.errors import ProtocolError
from ecmem.framing import FrameProtocol

RID = "00000000000000a1"  # a region id as a record names one


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def writelines(self, bufs: list[bytes]) -> None:
        self.written.append(b"".join(bytes(b) for b in bufs))

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Recorder(FrameProtocol):
    def __init__(self, scatter: bool = False) -> None:
        super().__init__(max_payload=1 << 20)
        self.got: list[tuple[int, wire.Message]] = []
        self.errors: list[ProtocolError] = []
        self.scatter = scatter

    def on_frame(self, req_id: int, msg: wire.Message) -> None:
        self.got.append((req_id, msg))

    def on_protocol_error(self, exc: ProtocolError) -> None:
        self.errors.append(exc)
        self.abort()

    def payload_targets(self, header: wire.FrameHeader, meta: Any) -> list[memoryview] | None:
        if not self.scatter:
            return None
        n = header.payload_len
        return [memoryview(bytearray(n // 3)), memoryview(bytearray(n - n // 3))]


def feed(proto: FrameProtocol, data: bytes, rng: random.Random) -> None:
    pos = 0
    while pos < len(data) and not proto.closed:
        buf = proto.get_buffer(-1)
        n = min(len(buf), len(data) - pos, rng.choice([1, 7, 100, 5000, 70000, 1 << 20]))
        buf[:n] = data[pos : pos + n]
        proto.buffer_updated(n)
        pos += n


def test_many_frames_any_split() -> None:
    msgs = [
        wire.Data(i, 10, 0, b"", 0, 0, 0, 0, bytes([i % 256]) * (i * 997 % 300000))
        for i in range(40)
    ]
    stream = b"".join(wire.encode_bytes(m, i) for i, m in enumerate(msgs))
    for seed in range(5):
        for scatter in (False, True):
            p = Recorder(scatter)
            p.connection_made(FakeTransport())  # type: ignore[arg-type]
            feed(p, stream, random.Random(seed))
            assert [i for i, _ in p.got] == list(range(40))
            for (_, got), want in zip(p.got, msgs, strict=True):
                assert isinstance(got, wire.Data) and got.version == want.version
                payload = got.payload
                joined = (
                    b"".join(bytes(x) for x in payload)
                    if isinstance(payload, tuple)
                    else bytes(payload)
                )
                assert joined == bytes(want.payload)


def test_bad_frame_closes_connection() -> None:
    p = Recorder()
    t = FakeTransport()
    p.connection_made(t)  # type: ignore[arg-type]
    feed(p, wire.encode_bytes(wire.Ping(), 1) + b"XX" + b"\x00" * 30, random.Random(0))
    assert len(p.got) == 1 and p.errors and t.aborted


def test_oversized_payload_refused_without_allocation() -> None:
    p = Recorder()
    t = FakeTransport()
    p.connection_made(t)  # type: ignore[arg-type]
    head = wire.HEADER.pack(b"EM", 1, wire.Data.KIND, 1, 0, 1 << 30, 0)
    feed(p, head, random.Random(0))
    assert p.errors and "exceeds" in str(p.errors[0]) and t.aborted


def _patch(version: int) -> wire.Patch:
    return wire.Patch(RID, 0, 1, 1, version, 0, 0, 0, 0, 0, 0, 0, b"x" * 4096)


def _frame(msg: wire.Message, req_id: int) -> bytes:
    return b"".join(bytes(b) for b in wire.encode(msg, req_id))


def test_small_frames_sent_in_one_turn_of_the_loop_leave_in_one_write() -> None:
    import asyncio

    class Writes(FakeTransport):
        def write(self, buf: bytes) -> None:
            self.written.append(bytes(buf))

    big = wire.Put(RID, 0, 0, 9, 1 << 17, 0, 0, 0, 0, 0, 0, b"y" * (1 << 17))

    async def turn() -> tuple[list[bytes], list[bytes], list[bytes]]:
        proto = Recorder()
        t = Writes()
        proto.connection_made(t)  # type: ignore[arg-type]
        for i in range(3):
            proto.send(_patch(5 + i), i)
        held = list(t.written)  # nothing yet: corked until the turn ends
        await asyncio.sleep(0)
        first = list(t.written)
        proto.send(_patch(5), 7)
        proto.send(big, 8)  # a big frame goes at once, after the small ones before it
        return held, first, t.written[len(first) :]

    held, first, after = asyncio.run(turn())
    assert held == [] and first == [b"".join(_frame(_patch(5 + i), i) for i in range(3))]
    assert after[0] == _frame(_patch(5), 7) and b"".join(after[1:]) == _frame(big, 8)
