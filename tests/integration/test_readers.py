"""Readers while a writer streams: each read sees every write acknowledged before it
started, and never a write half applied, even one spanning several stripes."""

from __future__ import annotations

import struct
import threading
import time

import pytest

from tests.harness import TestCluster

pytestmark = pytest.mark.integration
SPAN = 256 * 1024  # four 64 KiB stripes


def pattern(seq: int) -> bytes:
    return struct.pack("<I", seq) * (SPAN // 4)


def test_readers_see_acknowledged_writes_whole(cluster: TestCluster) -> None:
    writer, reader = cluster.client(), cluster.client()
    name = "readers/r"
    writer.create_region(name, 0, "ec:4+2", chunk=16 * 1024, slab_size="1MiB")
    writer.pwrite(name, 0, pattern(0))
    acked = 0
    stop = threading.Event()
    problems: list[str] = []
    reads = 0

    def write() -> None:
        nonlocal acked
        seq = 0
        while not stop.is_set():
            seq += 1
            writer.pwrite(name, 0, pattern(seq))
            acked = seq

    def read() -> None:
        nonlocal reads
        while not stop.is_set():
            before = acked
            try:
                data = reader.pread(name, 0, SPAN)
            except Exception as exc:  # a failed read is a finding too
                problems.append(f"read failed: {type(exc).__name__}: {exc}")
                return
            words = set(struct.unpack(f"<{SPAN // 4}I", data))
            reads += 1
            if len(words) != 1:
                problems.append(f"torn read: writes {sorted(words)} mixed")
            elif min(words) < before:
                problems.append(f"read write {min(words)}, but {before} was acknowledged")

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join(30)
    writer.close()
    reader.close()
    assert not problems, problems[:5]
    assert reads >= 10 and acked >= 10, (reads, acked)
