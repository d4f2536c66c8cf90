from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecmem import wire
from ecmem.errors import ProtocolError
from ecmem.framedecoder import FrameDecoder

RID = "00000000000000a1"  # a region id as a record names one

SAMPLES: list[wire.Message] = [
    wire.Put(RID, 3, 2, 7, 100, 0xDEADBEEF, 3, 4, 999, 6, 5, b"payload"),
    wire.Commit(RID, 9, 5),
    wire.Discard(RID, 9, 1),
    wire.Get(RID, 3, 2, 100, 4096, 0),
    wire.Get(RID, 3, 2, 100, 4096, 0, 1 << 32 | 5, 1),
    wire.Patch(RID, 3, 1, 4, 1 << 32 | 6, 4096, 0xABC, 3, 3, 999, 4, 0, b"page"),
    wire.GetPatches(RID, 3, wire.ALL_INDEXES, 7, 0),
    wire.Patches(
        RID, 9, 5, [[3, 1, 4, 10, 80, 7, 3, 3, 999, 2], [4, 0, 5, 11, 90, 8, 4, 4, 9, 3]], b"pgxyz"
    ),
    wire.PatchList([[9, 1, 0, 3, 0, 0, 9], [10, 2, 8, 2, 1, 2, 7]], 5, b"abcde"),
    wire.Delete(RID, 5, 3),
    wire.Delete(RID, 5, 0, 9, 1 << 33),
    wire.Repair(RID, 3, 2, 7, 100, 0xDEADBEEF, 3, 4, 999, 2, b"rebuilt"),
    wire.RepairPatch(RID, 3, 1, 4, 1 << 32 | 6, 4096, 0xABC, 3, 3, 999, 2, 1 << 32 | 9, 5, b"pg"),
    wire.Fence(RID, 4),
    wire.List("", 1),
    wire.Stat(),
    wire.Corrupt(RID, 0, 1, "flip", 9),
    wire.Ping(),
    wire.Ok({"a": 1, "b": "x"}),
    wire.Data(7, 1000, 0, b"\x00" * 8, 3, 2, 1, 9, b"x" * 1000),
    wire.Error("NOT_FOUND", "no such fragment"),
    wire.Listing([["r1", 0, 0, 1, 10]]),
]


def _eq(a: wire.Message, b: wire.Message) -> bool:
    if type(a) is not type(b):
        return False
    return a.meta() == b.meta() and bytes(getattr(a, "payload", b"")) == bytes(
        getattr(b, "payload", b"")
    )


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_roundtrip(msg: wire.Message) -> None:
    dec = FrameDecoder()
    out = dec.feed(wire.encode_bytes(msg, 42))
    assert len(out) == 1 and out[0][0] == 42 and _eq(out[0][1], msg)


def test_stream_split_anywhere() -> None:
    stream = b"".join(wire.encode_bytes(m, i) for i, m in enumerate(SAMPLES))
    rng = random.Random(1)
    for _ in range(50):
        dec = FrameDecoder()
        got: list[tuple[int, wire.Message]] = []
        pos = 0
        while pos < len(stream):
            n = rng.randint(1, 64)
            got += dec.feed(stream[pos : pos + n])
            pos += n
        assert [i for i, _ in got] == list(range(len(SAMPLES)))
        assert all(_eq(a, b) for (_, a), b in zip(got, SAMPLES, strict=True))


def _header(**kw: int) -> bytes:
    f = {"magic": b"EM", "version": 1, "kind": 2, "req": 1, "meta": 0, "payload": 0, "tag": 0}
    f.update(kw)  # type: ignore[arg-type]
    return wire.HEADER.pack(
        f["magic"], f["version"], f["kind"], f["req"], f["meta"], f["payload"], f["tag"]
    )


@pytest.mark.parametrize(
    "frame,needle",
    [
        (_header(magic=b"XX"), "bad magic"),
        (_header(version=9), "version 9"),
        (_header(kind=200), "unknown message kind"),
        (_header(meta=10**6), "metadata of"),
        (_header(payload=2**31), "payload of"),
        (_header(tag=1000), "tag"),
    ],
)
def test_bad_headers(frame: bytes, needle: str) -> None:
    with pytest.raises(ProtocolError) as err:
        FrameDecoder().feed(frame)
    assert needle in str(err.value)


def test_oversized_rejected_before_buffering() -> None:
    # The header alone is refused: nothing waits for (or allocates) the claimed body.
    dec = FrameDecoder(max_payload=1024)
    with pytest.raises(ProtocolError):
        dec.feed(_header(payload=4096))


@pytest.mark.parametrize(
    "meta,needle",
    [
        ([1, 2, 3], "list of 8 fields"),
        ([RID, -1, 0, 0, 1, 0, 0, 0], "out of range"),
        ([RID, 1 << 63, 0, 0, 1, 0, 0, 0], "out of range"),
        ([RID, "x", 0, 0, 1, 0, 0, 0], "must be int"),
        ({"a": 1}, "must be a list"),
        (["", 0, 0, 0, 1, 0, 0, 0], "region id"),
        ([RID, 0, 999, 0, 1, 0, 0, 0], "fragment index"),
        (["..", 0, 0, 0, 1, 0, 0, 0], "region id"),
        (["/etc/passwd", 0, 0, 0, 1, 0, 0, 0], "region id"),
        (["00000000000000A1", 0, 0, 0, 1, 0, 0, 0], "region id"),
        (["00000000000000a1/", 0, 0, 0, 1, 0, 0, 0], "region id"),
    ],
)
def test_bad_metadata(meta: object, needle: str) -> None:
    import msgpack

    body = msgpack.packb(meta)
    frame = _header(kind=wire.Get.KIND, meta=len(body)) + body
    with pytest.raises(ProtocolError) as err:
        FrameDecoder().feed(frame)
    assert needle in str(err.value)


def test_garbage_msgpack() -> None:
    frame = _header(kind=wire.Get.KIND, meta=3) + b"\xc1\xc1\xc1"
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(frame)


def test_payload_on_request_without_payload() -> None:
    import msgpack

    body = msgpack.packb([RID, 0, 0, 0, 1, 0, 0, 0])
    frame = _header(kind=wire.Get.KIND, meta=len(body), payload=3) + body + b"abc"
    with pytest.raises(ProtocolError, match="carries no payload"):
        FrameDecoder().feed(frame)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_only_protocol_errors(data: bytes) -> None:
    dec = FrameDecoder(max_payload=4096)
    try:
        dec.feed(data)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(SAMPLES) - 1), st.integers(0, 200), st.binary(min_size=1, max_size=4))
def test_fuzz_mutated_frames(which: int, pos: int, junk: bytes) -> None:
    frame = bytearray(wire.encode_bytes(SAMPLES[which], 1))
    pos %= len(frame)
    frame[pos : pos + len(junk)] = junk
    try:
        FrameDecoder(max_payload=4096).feed(bytes(frame))
    except ProtocolError:
        pass


def test_patches_go_scattered_and_arrive_split_by_entry() -> None:
    entries = [[3, 1, 4, 10, 80, 7, 3, 3, 999, 2], [4, 0, 5, 11, 90, 8, 4, 4, 9, 3]]
    sent = wire.Patches(RID, 9, 5, entries, (memoryview(b"pg"), memoryview(b"xyz")))
    [(_, got)] = FrameDecoder().feed(wire.encode_bytes(sent, 7))
    assert isinstance(got, wire.Patches) and got.entries == entries
    assert [(e[0], bytes(d)) for e, d in got.items()] == [(3, b"pg"), (4, b"xyz")]
    with pytest.raises(ProtocolError):  # lengths that do not add up
        wire.Patches.from_parts([RID, 9, 5, entries], b"pgxy")
    with pytest.raises(ProtocolError):  # an entry short of a field
        wire.Patches.from_parts([RID, 9, 5, [entries[0][:9]]], b"pg")


def test_header_size_is_stable() -> None:
    assert wire.HEADER_SIZE == struct.calcsize("!2sBBIIIH") == 18


def test_patch_lists_split_their_payload_and_refuse_a_mismatch() -> None:
    pl = wire.PatchList([[9, 1, 0, 3, 0, 0, 9], [10, 2, 8, 2, 1, 2, 7]], 5, b"abcde")
    assert pl.patches() == [(9, 1, 0, b"abc"), (10, 2, 8, b"de")]
    assert pl.writes() == [(0, 0, 9), (1, 2, 7)]
    with pytest.raises(ProtocolError):
        wire.PatchList.from_parts([[[9, 1, 0, 3]], 0], b"ab")
    with pytest.raises(ProtocolError):
        wire.Patch.from_parts([RID, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0], b"")  # nothing to patch
    with pytest.raises(ProtocolError):  # a patch newer than the commit point it claims
        wire.RepairPatch.from_parts([RID, 0, 0, 4, 9, 0, 0, 0, 0, 0, 2, 8, 0], b"pg")


def test_fragment_length_bounded() -> None:
    # A Put announcing a huge fragment is refused as it is decoded: nothing is allocated.
    huge = [RID, 0, 0, 1, 1 << 40, 0, 0, 0, 0, 0, 0]
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        wire.Put.from_parts(huge, b"")
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        wire.PutSlice.from_parts([RID, 0, 0, 1, 1 << 40, 0, 0, 0, 0, 0, 0, 0, 0], b"")
