"""A writer SIGKILLed at a random moment leaves a prefix of its writes, at least up to
the last one it was told was acknowledged. Seeded: a failure names its seed."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import TestCluster
from tests.integration.crash_writer import apply, writes

pytestmark = pytest.mark.integration
WRITER = Path(__file__).with_name("crash_writer.py")
RUNS = int(os.environ.get("ECMEM_CRASH_RUNS", "50"))


def run_once(cluster: TestCluster, cl, seed: int) -> str:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    mode = ("file", "pwrite", "pwritev")[seed % 3]
    region = f"crash/{seed}"
    cl.create_region(region, 0, "ec:4+2", chunk=16 * 1024, slab_size="1MiB")
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), cluster.zk, cluster.name, region, str(seed), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert proc.stdout is not None
    acked = -1
    deadline = time.monotonic() + 1.0 + rng.random() * 2.0  # import and connect take ~1s
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            line = proc.stdout.readline()
            if line.startswith("ack "):
                acked = int(line.split()[1])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for line in proc.stdout:  # acks printed before the kill landed
        if line.startswith("ack "):
            acked = int(line.split()[1])
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "Traceback" not in err, f"seed {seed}: the writer failed on its own:\n{err}"
    # The next writer recovers on open (once the killed one's session, and lease, expire).
    with cl.open(region, "r+b", timeout=20):
        pass
    got = cl.pread(region, 0, 1 << 30)
    model = bytearray()
    stream = writes(seed)
    for _ in range(acked + 1):
        apply(model, *next(stream))
    # In flight at the kill: at most one pwrite, one pwritev batch (up to 8), or the
    # writes since the last flush.
    for extra in range(0, 9):
        if got == model:
            return f"seed {seed} ({mode}): acked {acked}, region = first {acked + 1 + extra}"
        apply(model, *next(stream))
    raise AssertionError(
        f"seed {seed} ({mode}): region is not a prefix of the writes that includes every "
        f"acknowledged one (last acked: {acked}); {_nearest(got, seed, acked)}; replay "
        f"with ECMEM_CRASH_SEED={seed}"
    )


def _nearest(got: bytes, seed: int, acked: int) -> str:
    """Which prefix of the writes the region comes closest to, and where it differs."""
    model = bytearray()
    stream = writes(seed)
    best: tuple[int, int, str] = (1 << 62, -1, "")
    for n in range(acked + 10):
        if n:
            apply(model, *next(stream))
        if n + 1 < acked - 20:
            continue
        size = max(len(model), len(got))
        a, b = bytes(model).ljust(size, b"\0"), got.ljust(size, b"\0")
        diff = [i for i in range(size) if a[i] != b[i]]
        if len(diff) < best[0]:
            where = f"{diff[0]}..{diff[-1]}" if diff else ""
            best = (len(diff), n, f"sizes {len(got)} vs {len(model)}, bytes differ at {where}")
    return f"nearest: the first {best[1]} writes, {best[0]} bytes differ ({best[2]})"


def test_crash_leaves_a_prefix(cluster: TestCluster) -> None:
    cl = cluster.client()
    only = os.environ.get("ECMEM_CRASH_SEED")
    seeds = [int(only)] if only else list(range(1, RUNS + 1))
    outcomes = []
    try:
        for seed in seeds:
            outcomes.append(run_once(cluster, cl, seed))
    finally:
        cl.close()
    print("\n".join(outcomes))
    assert len(outcomes) == len(seeds)
