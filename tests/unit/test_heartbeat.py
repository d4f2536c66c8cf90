"""Heartbeat format and the detector's judgement, with a stepped clock."""

from __future__ import annotations

from ecmem import heartbeat


def test_beat_answer_roundtrip_and_garbage_ignored() -> None:
    reply = heartbeat.answer(heartbeat.beat(7))
    assert reply is not None and heartbeat.answered(reply) == 7
    assert heartbeat.answer(b"junk") is None and heartbeat.answer(reply) is None
    assert heartbeat.answered(heartbeat.beat(7)) is None


def test_silent_node_becomes_suspect_and_recovers() -> None:
    changes: list[tuple[str, bool]] = []
    d = heartbeat.Detector(lambda: {}, lambda n, s: changes.append((n, s)), interval=0.1)
    d.sent = {"a": 0.0, "b": 0.0}
    for t in (0.1, 0.2):
        d.heard("a", t)
        d.heard("b", t)
        d.judge(t)
    assert changes == []
    for t in (0.3, 0.4, 0.5, 0.6):  # b goes quiet
        d.heard("a", t)
        d.judge(t)
    assert changes == [("b", True)]
    d.heard("b", 0.7)
    d.judge(0.7)
    assert changes == [("b", True), ("b", False)]
