"""Scenario 4: a writer paused past its ZooKeeper session, a new writer takes over, the old
one resumes: none of its writes may be accepted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import ecmem

from ..checker import Open, Write, check_region
from ..history import OK
from ..report import RunReport
from ..schedule import Fault
from ..target import Target
from .common import digest_of, page_digests, read_records, start_writer, writer_history


def stale_writer(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 4: a writer paused past its ZooKeeper session, a new writer takes over,
    the old one resumes: none of its writes may be accepted."""
    size = 65536
    history = c.root / "writer-a.jsonl"
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        cl.create_region(c.region("s4"), 0, "ec:4+2", chunk=16384)
    proc = start_writer(c, c.region("s4"), seed, size, history, "writer-a")
    t0 = time.time()
    try:
        rng = random.Random(seed)
        want = rng.randrange(10, 40)

        def lines() -> int:
            return len(history.read_text().splitlines()) if history.exists() else 0

        while lines() < want + 1:
            if proc.poll() is not None or time.time() - t0 > 60:
                report.fail("writer A stopped or stalled before the pause")
                return
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGSTOP)
        paused = time.time()
        report.faults.append(Fault(paused - t0, "pause", "writer-a", 0.0))
        time.sleep(3 + 4)  # past A's session timeout: its lease is gone
        writes_a, _, last = writer_history(history)
        b_writes: list[Write] = []
        opens_b: list[Open] = []
        with ecmem.connect(c.zk, cluster=c.cluster) as cl:
            with cl.open(c.region("s4"), "r+b", timeout=20) as f:
                epoch_b = cl.async_client.writer_of(c.region("s4")).epoch
                opens_b.append(Open(epoch_b, time.time()))
                # B overwrites every third block, not A's last: A resumes with that write,
                # and a newer version there would refuse it even with no fencing at all.
                for j, blk in enumerate(range(0, last, 3)):
                    data = random.Random(-seed - blk).randbytes(size)
                    start = time.time()
                    f.seek(blk * size)
                    f.write(data)
                    f.flush()
                    b_writes.append(
                        Write(epoch_b, j, {blk: digest_of(data)}, OK, start, time.time())
                    )
        report.faults[-1] = Fault(paused - t0, "pause", "writer-a", time.time() - paused)
        os.kill(proc.pid, signal.SIGCONT)
        try:
            proc.wait(timeout=6)  # a fenced writer stops within a second or two
        except subprocess.TimeoutExpired:
            report.fail("writer A kept going after being fenced: it never got an error")
            proc.kill()
            proc.wait()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()
    writes_a, opens_a, last = writer_history(history)
    after = [w for w in writes_a if w.start > opens_b[0].time]
    if not after:
        report.fail("writer A made no write after it was resumed: nothing was tested")
    accepted = [w for w in after if w.outcome == OK]
    report.numbers.update(
        writes_before_pause=sum(1 for w in writes_a if w.start <= paused),
        writes_after_resume=len(after),
        accepted_after_resume=len(accepted),
        refusals=sorted({r.get("why", "")[:400] for r in read_records(history) if r.get("why")}),
    )
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        final = page_digests(cl, c.region("s4"), size, cl.stat(c.region("s4")).size // size)
    verdict = check_region(writes_a + b_writes, final, opens_a + opens_b)
    for p in verdict.problems:
        report.fail(p)
    report.passed = not report.problems
