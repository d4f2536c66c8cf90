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
    d = heartbeat.Detector(lambda: {}, lambda n, s: changes.append((n, s)), misses=3)
    nodes = {"a": "127.0.0.1:1", "b": "127.0.0.1:2"}
    for _ in range(5):  # both answer every beat
        assert [n for n, _ in d.round(nodes)] == ["a", "b"]
        d.heard("a")
        d.heard("b")
    for _ in range(3):  # b goes quiet; no verdict until three beats went unanswered
        assert changes == []
        d.round(nodes)
        d.heard("a")
    d.round(nodes)
    assert changes == [("b", True)]
    d.heard("b")
    assert changes == [("b", True), ("b", False)]
    d.round({"a": "127.0.0.1:1"})  # a node that left is forgotten
    assert "b" not in d.unanswered


def test_a_silent_node_that_leaves_is_not_taken_for_answering() -> None:
    """Its ZooKeeper session may expire while it is paused: that is no answer."""
    changes: list[tuple[str, bool]] = []
    d = heartbeat.Detector(lambda: {}, lambda n, s: changes.append((n, s)), misses=3)
    nodes = {"a": "127.0.0.1:1", "b": "127.0.0.1:2"}
    for _ in range(4):
        d.round(nodes)
        d.heard("a")
    d.round(nodes)
    assert changes == [("b", True)]
    for members in ({"a": "127.0.0.1:1"}, nodes, nodes):  # b left (its session expired),
        d.round(members)  # then is back in the membership, still silent
        d.heard("a")
    assert changes == [("b", True)]
    d.heard("b")  # and answers at last
    assert changes == [("b", True), ("b", False)]
