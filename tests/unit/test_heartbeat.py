"""Heartbeat format, and the phi-accrual detector's judgement with a stepped clock."""

from __future__ import annotations

import math
import socket
import time

import pytest

from ecmem import heartbeat, phi

NODES = {"a": "127.0.0.1:1", "b": "127.0.0.1:2"}


def test_beat_answer_roundtrip_and_garbage_ignored() -> None:
    reply = heartbeat.answer(heartbeat.beat(7))
    assert reply is not None and heartbeat.answered(reply) == 7
    assert heartbeat.answer(b"junk") is None and heartbeat.answer(reply) is None
    assert heartbeat.answered(heartbeat.beat(7)) is None


@pytest.mark.parametrize(
    ("silence", "mean", "std", "low", "high"),
    [
        (0.1, 0.1, 0.02, 0.2, 0.4),  # at the mean: even odds
        (0.3, 0.1, 0.02, 20.0, math.inf),  # ten deviations out
        (0.3, 0.1, 0.2, 0.5, 1.5),  # the same silence from a node that wanders
    ],
)
def test_phi_grows_with_silence_measured_against_spread(
    silence: float, mean: float, std: float, low: float, high: float
) -> None:
    assert low <= phi.phi(silence, mean, std) <= high


def clockwork(d: phi.Detector, t: float, beats: int, answer: tuple[str, ...] = ("a", "b")) -> float:
    for _ in range(beats):
        d.round(NODES, t)
        for n in answer:
            d.heard(n, t + 0.001)
        t += phi.INTERVAL
    return t


def test_a_steady_node_is_suspect_soon_after_it_stops() -> None:
    changes: list[tuple[str, bool]] = []
    d = phi.Detector(lambda n, s: changes.append((n, s)))
    t = clockwork(d, 0.0, 50)
    t = clockwork(d, t, 2, ("a",))  # b quiet for 0.2 s: no verdict yet (MIN_SILENCE)
    assert changes == []
    t = clockwork(d, t, 3, ("a",))
    assert changes == [("b", True)], "steady answers stopping for 0.5 s is a failure"
    d.heard("b", t)
    assert changes == [("b", True), ("b", False)]


def test_a_node_that_always_wanders_gets_the_time_its_history_says() -> None:
    changes: list[tuple[str, bool]] = []
    d = phi.Detector(lambda n, s: changes.append((n, s)))
    t = 0.0
    for i in range(60):  # b's answers come every 0.1 s or up to 0.45 s late
        d.round(NODES, t)
        d.heard("a", t)
        if i % 4 == 3:
            d.heard("b", t)
        t += phi.INTERVAL
    assert changes == []
    t = clockwork(d, t, 5, ("a",))  # 0.5 s quiet is ordinary for b
    assert changes == []
    clockwork(d, t, 3, ("a",))  # but never beyond MAX_SILENCE
    assert changes == [("b", True)]


def test_our_own_stall_is_not_the_nodes_silence() -> None:
    changes: list[tuple[str, bool]] = []
    d = phi.Detector(lambda n, s: changes.append((n, s)))
    t = clockwork(d, 0.0, 20)
    t += 1.5  # our process did not run (descheduled, or the loop was busy)
    d.round(NODES, t)  # nobody could answer beats we never sent
    assert changes == []
    clockwork(d, t + phi.INTERVAL, 3)
    assert changes == []


def test_a_silent_node_that_leaves_is_not_taken_for_answering() -> None:
    """Its ZooKeeper session may expire while it is paused: that is no answer."""
    changes: list[tuple[str, bool]] = []
    d = phi.Detector(lambda n, s: changes.append((n, s)))
    t = clockwork(d, 0.0, 10)
    t = clockwork(d, t, 9, ("a",))
    assert changes == [("b", True)]
    for members in ({"a": "127.0.0.1:1"}, NODES, NODES):  # b left, then is back, silent
        d.round(members, t)
        d.heard("a", t)
        t += phi.INTERVAL
    assert changes == [("b", True)]
    d.heard("b", t)  # and answers at last
    assert changes == [("b", True), ("b", False)]


def test_beater_and_responder_threads_find_a_silent_node() -> None:
    """Real sockets: an answering responder stays trusted, a bound socket that never
    answers is suspect within MAX_SILENCE and a beat."""
    live = heartbeat.serve("127.0.0.1", 0)
    mute = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mute.bind(("127.0.0.1", 0))
    changes: list[tuple[str, bool, float]] = []
    nodes = {
        "live": f"127.0.0.1:{live.sock.getsockname()[1]}",
        "mute": f"127.0.0.1:{mute.getsockname()[1]}",
    }
    start = time.monotonic()
    beater = heartbeat.Beater(lambda: nodes, lambda n, s: changes.append((n, s, time.monotonic())))
    beater.start()
    try:
        time.sleep(1.5)
    finally:
        beater.close()
        live.close()
        mute.close()
    assert [(n, s) for n, s, _ in changes] == [("mute", True)], changes
    took = changes[0][2] - start
    assert took <= phi.MAX_SILENCE + 2 * phi.INTERVAL, f"suspected only after {took:.2f}s"
