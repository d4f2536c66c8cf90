"""A writer SIGKILLed at a random moment leaves a prefix of its writes, at least up to
the last one it was told was acknowledged: while it folds page patches (one run in
four folds a stripe every two patches), and with M of the region's nodes, the log
nodes of its first data fragment, SIGKILLed under it. Seeded: a failure names its
seed."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import make_cluster
from tests.harness import TestCluster, region_nodes
from tests.integration.crash_writer import apply, writes

pytestmark = pytest.mark.integration
WRITER = Path(__file__).with_name("crash_writer.py")
# make test runs a sample (keeping it under 20 minutes); make chaos runs 500 and 50.
RUNS = int(os.environ.get("ECMEM_CRASH_RUNS", "8"))  # make chaos: 500
KILL_RUNS = int(os.environ.get("ECMEM_CRASH_KILL_RUNS", "3"))


def _acks(proc: subprocess.Popen[str], acked: int, until: float) -> int:
    """The last ack the writer printed by ``until`` (or until it exits)."""
    assert proc.stdout is not None
    while time.monotonic() < until and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, until - time.monotonic()))
        if ready:
            line = proc.stdout.readline()
            if line.startswith("ack "):
                acked = int(line.split()[1])
    return acked


@dataclass
class Run:
    seed: int
    region: str
    mode: str
    folds: bool
    proc: subprocess.Popen[str]


def start(cluster: TestCluster, cl, seed: int, kill_nodes: bool) -> Run:  # type: ignore[no-untyped-def]
    """Create the run's region and start its writer, which imports and connects (about a
    second) while the previous run is checked, then waits for "go"."""
    mode = ("file", "pwrite", "pwritev")[seed % 3]
    folds = seed % 4 == 0
    region = f"crash/{seed}{'k' if kill_nodes else ''}"
    cl.create_region(region, 0, "ec:4+2", chunk=16 * 1024, slab_size="1MiB")
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), cluster.zk, cluster.name, region, str(seed), mode]
        + (["2"] if folds else []),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    return Run(seed, region, mode, folds, proc)


def run_all(cluster: TestCluster, seeds: list[int], kill_nodes: bool = False) -> None:
    cl = cluster.client()
    outcomes = []
    pending: Run | None = None
    try:
        pending = start(cluster, cl, seeds[0], kill_nodes)
        for i, _ in enumerate(seeds):
            run, pending = pending, None
            acked, how, victims = drive(cluster, cl, run, kill_nodes)
            following = seeds[i + 1] if i + 1 < len(seeds) else None
            if following is not None and not victims:
                pending = start(cluster, cl, following, kill_nodes)
            try:
                outcomes.append(_check(cl, run.region, run.seed, acked, how))
            finally:
                if victims:  # checked with them down; back (empty) for the next run
                    cluster.restart(*victims)
                    cl.delete_region(run.region)
                    if following is not None:
                        pending = start(cluster, cl, following, kill_nodes)
    finally:
        if pending is not None:
            pending.proc.kill()
            pending.proc.wait()
        cl.close()
    print("\n".join(outcomes))
    assert len(outcomes) == len(seeds)


def drive(  # type: ignore[no-untyped-def]
    cluster: TestCluster, cl, run: Run, kill_nodes: bool
) -> tuple[int, str, list[str]]:
    """Let the writer write for a random while (with M nodes killed under it, if so),
    SIGKILL it; returns the last write acknowledged, the run's description, and the
    nodes killed."""
    seed, region, proc = run.seed, run.region, run.proc
    rng = random.Random(seed)
    assert proc.stdout is not None and proc.stdin is not None
    ready = proc.stdout.readline()
    assert ready.strip() == "ready", f"seed {seed}: the writer did not start: {ready!r}"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    acked = _acks(proc, -1, time.monotonic() + 0.2 + rng.random() * 1.6)
    victims: list[str] = []
    after = ""
    if kill_nodes:
        end = time.monotonic() + 10
        while acked < 0 and time.monotonic() < end and proc.poll() is None:
            acked = _acks(proc, acked, time.monotonic() + 0.1)  # its slab is placed by then
        holders = region_nodes(cl, region)
        victims = [holders[0], holders[4]]  # data fragment 0's node and a parity node
        cluster.kill(*victims, wait_gone=False)
        before = acked
        acked = _acks(proc, acked, time.monotonic() + 0.5 + rng.random() * 1.5)
        after = f", {acked - before} acked after"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for line in proc.stdout:  # acks printed before the kill landed
        if line.startswith("ack "):
            acked = int(line.split()[1])
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "Traceback" not in err, f"seed {seed}: the writer failed on its own:\n{err[-2000:]}"
    how = f"seed {seed} ({run.mode}{', folding' if run.folds else ''}"
    how += f", killed {','.join(victims)}{after})" if victims else ")"
    return acked, how, victims


def _check(cl, region: str, seed: int, acked: int, how: str) -> str:  # type: ignore[no-untyped-def]
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
            return f"{how}: acked {acked}, region = first {acked + 1 + extra}"
        apply(model, *next(stream))
    raise AssertionError(
        f"{how}: region is not a prefix of the writes that includes every "
        f"acknowledged one (last acked: {acked}); {_nearest(got, seed, acked)}; replay "
        f"with ECMEM_CRASH_SEED={seed}{' and -k killed' if 'killed' in how else ''}"
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
    only = os.environ.get("ECMEM_CRASH_SEED")
    run_all(cluster, [int(only)] if only else list(range(1, RUNS + 1)))


@pytest.fixture(scope="module")
def eight(zk_hosts: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    """Eight nodes: a region's six and two to hand its slots to when two of them die."""
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=8)
    yield c
    c.down()


def test_crash_with_m_log_nodes_killed_leaves_a_prefix(eight: TestCluster) -> None:
    only = os.environ.get("ECMEM_CRASH_SEED")
    run_all(eight, [int(only)] if only else list(range(1, KILL_RUNS + 1)), kill_nodes=True)
