"""Scenario 5, partitions: a ZooKeeper minority, one storage host cut off, and a
ring in which every host sees a majority but no two see the same one.

Links are cut with chaos/net.py (a link set down, or blackhole routes between two
hosts). Writers run as chaos.writer processes on the client hosts, so the cuts
reach them; their histories go through the write checker, which names any write
of an older epoch acknowledged after a newer writer opened the region.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import ecmem

from ..checker import Open, Write, check_region
from ..cluster import ChaosCluster
from ..history import OK
from ..report import RunReport, Sample
from ..schedule import ISOLATE, Fault
from .common import digest_of, healthy_within, page_digests, start_writer, writer_history

PAGE = 65536  # the writers' block: one stripe of ec:4+2 with 16 KiB chunks


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait_lines(path: Path, n: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while _lines(path) < n:
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _timed(report: RunReport, writes: list[Write], t0: float) -> None:
    """The writes into the report's plot (their times are Unix times, t0 the start)."""
    for w in writes:
        if w.end != float("inf"):
            report.samples.append(
                Sample(w.start - t0, "write", w.end - w.start, PAGE, w.outcome == OK)
            )


def _check(
    c: ChaosCluster, region: str, writes: list[Write], opens: list[Open], report: RunReport
) -> None:
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        final = page_digests(cl, region, PAGE, cl.stat(region).size // PAGE)
    for p in check_region(writes, final, opens).problems:
        report.fail(p)


def partition(c: ChaosCluster, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 5: a writer on a host cut off from the ZooKeeper majority (it still
    reaches the storage nodes and one ZooKeeper server, a minority) keeps trying to
    write; a writer on the majority side takes the region over. The minority writer
    acknowledges nothing once the takeover happened, never two epochs at once, and
    after the partition heals the cluster converges."""
    size = 65536
    history = c.root / "writer-minority.jsonl"
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        cl.create_region(c.region("s5"), 0, "ec:4+2", chunk=16384)
    # The writer lives on its own host, so the nemesis can cut its links.
    proc = start_writer(
        c,
        c.region("s5"),
        seed,
        size,
        history,
        "writer-minority",
        wrap=lambda a: c.net.command("client", a),
    )
    t0 = time.time()
    opens_b: list[Open] = []
    b_writes: list[Write] = []
    try:
        deadline = time.time() + 60
        while not history.exists() or len(history.read_text().splitlines()) < 15:
            if proc.poll() is not None or time.time() > deadline:
                report.fail("the minority writer stopped or stalled before the partition")
                return
            time.sleep(0.05)
        c.net.cut("client", "zk1")
        c.net.cut("client", "zk2")
        c.net.isolate("zk3")  # ...and the server it may still reach loses its quorum
        cut_at = time.time()
        report.faults.append(Fault(cut_at - t0, "isolate", "client+zk3", 0.0))
        # A ZooKeeper election may follow the isolation: give the majority time to serve.
        with ecmem.connect(c.zk, cluster=c.cluster, timeout=60) as cl:
            with cl.open(c.region("s5"), "r+b", timeout=30) as f:
                epoch_b = cl.async_client.writer_of(c.region("s5")).epoch
                opens_b.append(Open(epoch_b, time.time()))
                for j in range(10):
                    data = random.Random(-seed - j).randbytes(size)
                    start = time.time()
                    f.seek(j * 2 * size)
                    f.write(data)
                    f.flush()
                    b_writes.append(
                        Write(epoch_b, j, {j * 2: digest_of(data)}, OK, start, time.time())
                    )
        time.sleep(2)
        c.net.mend("client", "zk1")
        c.net.mend("client", "zk2")
        c.net.heal("zk3")
        report.faults[-1] = Fault(cut_at - t0, "isolate", "client+zk3", time.time() - cut_at)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            report.fail("the minority writer never got an error after the takeover")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    writes_a, opens_a, last = writer_history(history)
    _timed(report, writes_a + b_writes, t0)
    after = [w for w in writes_a if w.start > opens_b[0].time]
    report.numbers.update(
        minority_writes_after_takeover=len(after),
        minority_acked_after_takeover=sum(1 for w in after if w.outcome == OK),
    )
    healthy_within(c, report, 120, "after healing")
    _check(c, c.region("s5"), writes_a + b_writes, opens_a + opens_b, report)
    report.passed = not report.problems


def partition_host(c: ChaosCluster, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 5b: a storage host holding the region is cut off (its link down) past its
    session and the rebuild grace while a writer writes: writes go on around it, every
    acknowledged write survives, and after the link returns the cluster converges."""
    region = c.region("s5h")
    history = c.root / "writer-host.jsonl"
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        cl.create_region(region, 0, "ec:4+2", chunk=PAGE // 4)
    proc = start_writer(
        c, region, seed, PAGE, history, "writer-host", wrap=lambda a: c.net.command("client", a)
    )
    t0 = time.time()
    try:
        if not _wait_lines(history, 20, proc):
            report.fail("the writer stopped or stalled before the partition")
            return
        with ecmem.connect(c.zk, cluster=c.cluster) as cl:
            meta = cl.region_meta(region)
        victim = random.Random(seed).choice([n for n, _ in meta.slabs[0]])
        c.net.isolate(victim)
        cut_at = time.time()
        hold = c.session_timeout + c.grace + 4  # declared down, rebuilt elsewhere
        time.sleep(hold)
        c.net.heal(victim)
        healed = time.time()
        report.faults.append(Fault(cut_at - t0, ISOLATE, victim, healed - cut_at))
        _wait_lines(history, _lines(history) + 20, proc)  # and it writes on after
    finally:
        _end(proc)
    writes, opens, _ = writer_history(history)
    _timed(report, writes, t0)
    during = [w for w in writes if w.outcome == OK and cut_at <= w.start and w.end <= healed]
    report.numbers.update(
        writes=len(writes),
        acked_while_cut_off=len(during),
        slowest_write_s=round(
            max((w.end - w.start for w in writes if w.outcome == OK), default=0), 2
        ),
    )
    if not during:
        report.fail(f"no write was acknowledged while {victim} was cut off")
    healthy_within(c, report, 120, "after healing")
    _check(c, region, writes, opens, report)
    report.passed = not report.problems


# Ring order: each host reaches only its two neighbours. zk2 is cut off from the other
# servers (their pair keeps the quorum); each client reaches the quorum through a
# different server, and the minority server zk2 too.
RING = ["zk1", "client", "zk2", "client2", "zk3"]


def partition_ring(c: ChaosCluster, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 5c: two writers on different hosts take turns with the region's lease
    (a few writes each, then give it up) while a ring partition leaves every host seeing
    a majority but no two the same one: no write of an older epoch is acknowledged once
    a newer writer opened the region, every acknowledged write survives, and the
    cluster converges after the ring heals."""
    region = c.region("s5r")
    seconds = max(10.0, min(60.0, mib / 16))
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        cl.create_region(region, 0, "ec:4+2", chunk=PAGE // 4)
    histories = [c.root / "writer-a.jsonl", c.root / "writer-b.jsonl"]
    procs = [
        start_writer(
            c,
            region,
            seed + i,
            PAGE,
            h,
            f"writer-{'ab'[i]}",
            wrap=functools.partial(c.net.command, host),
            extra=("--hold", "5"),
        )
        for i, (h, host) in enumerate(zip(histories, ["client", "client2"], strict=True))
    ]
    t0 = time.time()
    cuts = [
        (a, b)
        for i, a in enumerate(RING)
        for j, b in enumerate(RING)
        if i < j and (j - i) % len(RING) not in (1, len(RING) - 1)
    ]
    try:
        if not all(_wait_lines(h, 10, p) for h, p in zip(histories, procs, strict=True)):
            report.fail("a writer stopped or stalled before the partition")
            return
        for a, b in cuts:
            c.net.cut(a, b)
        cut_at = time.time()
        time.sleep(seconds)
        for a, b in cuts:
            c.net.mend(a, b)
        healed = time.time()
        report.faults.append(Fault(cut_at - t0, "ring", "+".join(RING), healed - cut_at))
        for h, p in zip(histories, procs, strict=True):
            _wait_lines(h, _lines(h) + 10, p)
    finally:
        for p in procs:
            _end(p)
    writes: list[Write] = []
    opens: list[Open] = []
    for h in histories:
        w, o, _ = writer_history(h)
        writes += w
        opens += o
    _timed(report, writes, t0)
    during = [w for w in writes if w.outcome == OK and cut_at <= w.start and w.end <= healed]
    report.numbers.update(
        seconds=seconds,
        epochs=len({o.epoch for o in opens}),
        writes_ok=sum(1 for w in writes if w.outcome == OK),
        acked_during_ring=len(during),
    )
    if len({o.epoch for o in opens}) < 3:
        report.fail("the writers did not take turns: nothing was tested")
    if not during:  # each client still reaches a ZooKeeper majority and every node
        report.fail("no write was acknowledged during the ring: the cluster stalled")
    healthy_within(c, report, 120, "after healing")
    _check(c, region, writes, opens, report)
    report.passed = not report.problems


# name -> (scenario, storage hosts it needs, the coordinator's rebuild grace in seconds)
